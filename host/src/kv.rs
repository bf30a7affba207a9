//! Tenants' key-value buckets as a model: what a write to one key does to its value (set,
//! delete, increment, compare-and-swap) and to its tenant's quota. Store backends apply
//! [`decide`] and [`check_quota`] inside their atomic, durable write; handlers reach buckets
//! through `wasi:keyvalue`, operators through the REST API.

/// What one tenant's buckets may hold, together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct KvLimits {
    /// Keys over all of a tenant's buckets.
    pub keys_per_tenant: u64,
    /// Bytes of keys and values over all of a tenant's buckets.
    pub bytes_per_tenant: u64,
    /// Bytes of one value.
    pub value_bytes: usize,
}

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

impl Default for KvLimits {
    fn default() -> KvLimits {
        KvLimits {
            keys_per_tenant: 100_000,
            bytes_per_tenant: 64 * 1024 * 1024,
            value_bytes: 1024 * 1024,
        }
    }
}

/// Where a value lives: a key of a bucket of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvKey {
    pub tenant: String,
    pub bucket: String,
    pub key: String,
}

/// A change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Set(Vec<u8>),
    Delete,
    /// Adds to a counter (a decimal integer as text; an absent key counts as 0).
    Increment(i64),
    /// Sets `value` only if the key still holds `expected` (`None`: absent).
    Swap {
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
}

/// What a write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutcome {
    Set,
    /// Whether there was a value to delete.
    Deleted(bool),
    /// The counter's new value.
    Counted(i64),
    Swapped,
    /// The key no longer held the expected value; this is what it holds.
    SwapConflict(Option<Vec<u8>>),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("the value of '{0}' is not a counter (a decimal integer), so it cannot be incremented")]
    NotACounter(String),
    #[error("incrementing '{0}' would overflow a 64-bit counter")]
    Overflow(String),
    #[error("{0}")]
    Invalid(String),
    /// Storage failed underneath (unreachable, or a failure of its own).
    #[error("the key-value store failed: {0}")]
    Unavailable(String),
}

/// Keys and bytes a tenant holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvUsage {
    pub keys: u64,
    pub bytes: u64,
}

/// A bucket of a tenant, with what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvBucket {
    pub name: String,
    pub usage: KvUsage,
}

/// One page of a bucket's keys, in byte order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvKeys {
    pub keys: Vec<String>,
    /// Pass back to continue after the last key; `None`: no more.
    pub next: Option<String>,
}

/// Decides a write against the key's current value: the value to store (`None`: none) and
/// what to answer. Quotas are checked by [`check_quota`] once the new value is known.
pub fn decide(
    key: &str,
    op: KvOp,
    current: Option<&[u8]>,
) -> Result<(Option<Vec<u8>>, KvOutcome), KvError> {
    match op {
        KvOp::Set(value) => Ok((Some(value), KvOutcome::Set)),
        KvOp::Delete => Ok((None, KvOutcome::Deleted(current.is_some()))),
        KvOp::Increment(delta) => {
            let now = match current {
                None => 0,
                Some(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|text| text.trim().parse::<i64>().ok())
                    .ok_or_else(|| KvError::NotACounter(key.to_string()))?,
            };
            let next = now
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow(key.to_string()))?;
            Ok((
                Some(next.to_string().into_bytes()),
                KvOutcome::Counted(next),
            ))
        }
        KvOp::Swap { expected, value } => {
            if expected.as_deref() == current {
                Ok((Some(value), KvOutcome::Swapped))
            } else {
                let current = current.map(<[u8]>::to_vec);
                Ok((current.clone(), KvOutcome::SwapConflict(current)))
            }
        }
    }
}

/// A tenant's usage after replacing `old` with `new` under `key`, if within the limits.
/// Shrinking is always allowed, so a tenant over its quota can still delete.
pub fn check_quota(
    usage: KvUsage,
    key: &str,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
    limits: &KvLimits,
) -> Result<KvUsage, KvError> {
    let size = |value: Option<&[u8]>| value.map_or(0, |v| (key.len() + v.len()) as u64);
    let keys = usage.keys - u64::from(old.is_some()) + u64::from(new.is_some());
    let bytes = usage.bytes - size(old).min(usage.bytes) + size(new);
    if let Some(value) = new
        && value.len() > limits.value_bytes
    {
        return Err(KvError::QuotaExceeded(format!(
            "a value may have at most {} bytes; this one has {}",
            limits.value_bytes,
            value.len()
        )));
    }
    if keys > usage.keys && keys > limits.keys_per_tenant {
        return Err(KvError::QuotaExceeded(format!(
            "the tenant's buckets hold their quota of {} keys; delete some first",
            limits.keys_per_tenant
        )));
    }
    if bytes > usage.bytes && bytes > limits.bytes_per_tenant {
        return Err(KvError::QuotaExceeded(format!(
            "the tenant's buckets would hold {bytes} bytes, over their quota of {}",
            limits.bytes_per_tenant
        )));
    }
    Ok(KvUsage { keys, bytes })
}

/// Checks a bucket name and a key before they reach the store.
pub fn check_key(bucket: &str, key: &str) -> Result<(), KvError> {
    crate::grants::check_name("bucket", bucket).map_err(KvError::Invalid)?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.contains('\0') {
        return Err(KvError::Invalid(format!(
            "a key must have 1 to {MAX_KEY_BYTES} bytes and no NUL character"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_counts_from_zero_for_an_absent_key() {
        let (value, outcome) = decide("n", KvOp::Increment(5), None).unwrap();
        assert_eq!(
            (value, outcome),
            (Some(b"5".to_vec()), KvOutcome::Counted(5))
        );
    }

    #[test]
    fn increment_refuses_a_value_that_is_not_a_counter() {
        let refused = decide("n", KvOp::Increment(1), Some(b"abc"));
        assert_eq!(refused, Err(KvError::NotACounter("n".into())));
    }

    #[test]
    fn increment_refuses_to_overflow() {
        let max = i64::MAX.to_string();
        let refused = decide("n", KvOp::Increment(1), Some(max.as_bytes()));
        assert_eq!(refused, Err(KvError::Overflow("n".into())));
    }

    #[test]
    fn a_swap_against_a_changed_value_answers_the_current_one_and_keeps_it() {
        let op = KvOp::Swap {
            expected: Some(b"old".to_vec()),
            value: b"new".to_vec(),
        };
        let (value, outcome) = decide("k", op, Some(b"other")).unwrap();
        assert_eq!(value, Some(b"other".to_vec()));
        assert_eq!(outcome, KvOutcome::SwapConflict(Some(b"other".to_vec())));
    }

    #[test]
    fn a_swap_expecting_absence_creates_the_key() {
        let op = KvOp::Swap {
            expected: None,
            value: b"first".to_vec(),
        };
        let (value, outcome) = decide("k", op, None).unwrap();
        assert_eq!(
            (value, outcome),
            (Some(b"first".to_vec()), KvOutcome::Swapped)
        );
    }

    #[test]
    fn a_new_key_over_the_key_quota_is_refused() {
        let limits = KvLimits {
            keys_per_tenant: 2,
            ..KvLimits::default()
        };
        let full = KvUsage { keys: 2, bytes: 10 };
        assert!(matches!(
            check_quota(full, "k", None, Some(b"v"), &limits),
            Err(KvError::QuotaExceeded(_))
        ));
        // Replacing an existing key adds no key.
        assert!(check_quota(full, "k", Some(b"v"), Some(b"w"), &limits).is_ok());
    }

    #[test]
    fn deleting_is_allowed_over_the_quota() {
        let limits = KvLimits {
            bytes_per_tenant: 1,
            ..KvLimits::default()
        };
        let over = KvUsage { keys: 1, bytes: 50 };
        let after = check_quota(over, "k", Some(b"value"), None, &limits).unwrap();
        assert_eq!(after, KvUsage { keys: 0, bytes: 44 });
    }

    #[test]
    fn a_value_over_the_size_limit_is_refused() {
        let limits = KvLimits {
            value_bytes: 4,
            ..KvLimits::default()
        };
        assert!(matches!(
            check_quota(KvUsage::default(), "k", None, Some(b"12345"), &limits),
            Err(KvError::QuotaExceeded(_))
        ));
    }
}
