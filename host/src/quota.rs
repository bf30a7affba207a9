//! Quotas: how much of the server one tenant or one API key may hold at once (waiting long
//! polls, running Wasm attempts, handler uploads, deployed handlers, triggers), and the
//! counters that enforce the ones held only while a request lasts.
//!
//! A quota is a bound on what a tenant holds, not on its throughput (that is the rate
//! limiter's): it keeps one tenant's flood from taking the slots every tenant shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::job::TenantScope;

/// The configured bounds; every one is visible to the tenant in `whoami`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Quotas {
    /// Long polls waiting at once on the whole server.
    pub waiting_activations: usize,
    /// Long polls waiting at once that may take jobs of one tenant.
    pub waiting_activations_per_tenant: usize,
    /// Long polls waiting at once with one API key.
    pub waiting_activations_per_key: usize,
    /// Wasm attempts running at once for one tenant.
    pub attempts_per_tenant: usize,
    /// Handler uploads being validated and compiled at once for one tenant.
    pub uploads_per_tenant: usize,
    /// Handlers (job types with a handler) one tenant may have deployed.
    pub handlers_per_tenant: usize,
    /// Triggers one tenant may have.
    pub triggers_per_tenant: usize,
    /// What one tenant's key-value buckets may hold.
    pub kv: crate::kv::KvLimits,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            waiting_activations: 10_000,
            waiting_activations_per_tenant: 2_000,
            waiting_activations_per_key: 1_000,
            attempts_per_tenant: 32,
            uploads_per_tenant: 2,
            handlers_per_tenant: 100,
            triggers_per_tenant: 1_000,
            kv: crate::kv::KvLimits::default(),
        }
    }
}

/// A quota a request would exceed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{what}: at most {limit} at once; retry later")]
pub struct QuotaExceeded {
    pub what: String,
    pub limit: usize,
}

/// Counts of something held per request (a waiting long poll, an upload), server-wide, per
/// tenant and per key.
#[derive(Debug)]
pub struct Holdings {
    name: &'static str,
    total_limit: usize,
    tenant_limit: usize,
    key_limit: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_tenant: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
}

impl Holdings {
    /// `name` says what is held, in plural ("waiting long polls").
    pub fn new(name: &'static str, total: usize, per_tenant: usize, per_key: usize) -> Holdings {
        Holdings {
            name,
            total_limit: total,
            tenant_limit: per_tenant,
            key_limit: per_key,
            counts: Mutex::default(),
        }
    }

    /// How many are held now, server-wide.
    pub fn total(&self) -> usize {
        self.lock().total
    }

    /// How many the tenant holds now.
    pub fn of_tenant(&self, tenant: &str) -> usize {
        self.lock().by_tenant.get(tenant).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one for `key_id` on each tenant of `tenants`, or refuses without taking any. A
    /// key of every tenant is bounded per key and server-wide only: it is nobody's tenant.
    pub fn take(
        self: &Arc<Self>,
        key_id: &str,
        tenants: &TenantScope,
    ) -> Result<Held, QuotaExceeded> {
        let tenants: Vec<String> = match tenants {
            TenantScope::All => Vec::new(),
            TenantScope::Only(named) => named.iter().cloned().collect(),
        };
        let mut counts = self.lock();
        if counts.total >= self.total_limit {
            return Err(self.exceeded("on this server", self.total_limit));
        }
        if counts.by_key.get(key_id).copied().unwrap_or(0) >= self.key_limit {
            return Err(self.exceeded("with this API key", self.key_limit));
        }
        for tenant in &tenants {
            if counts.by_tenant.get(tenant).copied().unwrap_or(0) >= self.tenant_limit {
                return Err(self.exceeded(&format!("for tenant '{tenant}'"), self.tenant_limit));
            }
        }
        counts.total += 1;
        *counts.by_key.entry(key_id.to_string()).or_default() += 1;
        for tenant in &tenants {
            *counts.by_tenant.entry(tenant.clone()).or_default() += 1;
        }
        Ok(Held {
            holdings: self.clone(),
            key_id: key_id.to_string(),
            tenants,
        })
    }

    fn exceeded(&self, scope: &str, limit: usize) -> QuotaExceeded {
        QuotaExceeded {
            what: format!("too many {} {scope}", self.name),
            limit,
        }
    }

    fn give_back(&self, key_id: &str, tenants: &[String]) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        decrement(&mut counts.by_key, key_id);
        for tenant in tenants {
            decrement(&mut counts.by_tenant, tenant);
        }
    }
}

/// Drops entries at zero, so the maps hold only current holders.
fn decrement(map: &mut HashMap<String, usize>, name: &str) {
    if let Some(count) = map.get_mut(name) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(name);
        }
    }
}

/// One held slot, given back when dropped.
#[derive(Debug)]
pub struct Held {
    holdings: Arc<Holdings>,
    key_id: String,
    tenants: Vec<String>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.holdings.give_back(&self.key_id, &self.tenants);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdings() -> Arc<Holdings> {
        Arc::new(Holdings::new("waiting long polls", 4, 2, 3))
    }

    #[test]
    fn a_tenant_at_its_quota_is_refused_while_another_tenant_is_not() {
        let holdings = holdings();
        let acme = TenantScope::only(["acme"]);
        let _a = holdings.take("k1", &acme).unwrap();
        let _b = holdings.take("k2", &acme).unwrap();
        let refused = holdings.take("k3", &acme).unwrap_err();
        assert!(refused.to_string().contains("tenant 'acme'"), "{refused}");
        holdings
            .take("k3", &TenantScope::only(["globex"]))
            .expect("another tenant still has room");
    }

    #[test]
    fn a_key_at_its_quota_is_refused() {
        let holdings = holdings();
        let all = TenantScope::All;
        let _held: Vec<_> = (0..3).map(|_| holdings.take("k", &all).unwrap()).collect();
        let refused = holdings.take("k", &all).unwrap_err();
        assert!(refused.to_string().contains("API key"), "{refused}");
    }

    #[test]
    fn the_server_wide_quota_bounds_every_key_and_tenant_together() {
        let holdings = holdings();
        let _held: Vec<_> = (0..4)
            .map(|i| holdings.take(&format!("k{i}"), &TenantScope::All).unwrap())
            .collect();
        let refused = holdings.take("k9", &TenantScope::All).unwrap_err();
        assert!(refused.to_string().contains("on this server"), "{refused}");
    }

    #[test]
    fn a_refused_take_holds_nothing_and_a_dropped_one_is_given_back() {
        let holdings = holdings();
        let both = TenantScope::only(["acme", "globex"]);
        let first = holdings.take("k", &both).unwrap();
        let _second = holdings.take("k", &TenantScope::only(["acme"])).unwrap();
        assert!(holdings.take("k", &both).is_err());
        assert_eq!(holdings.of_tenant("globex"), 1);
        drop(first);
        assert_eq!(holdings.total(), 1);
        assert_eq!(holdings.of_tenant("globex"), 0);
        holdings.take("k", &both).expect("room again");
    }
}
