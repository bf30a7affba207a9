//! Key layout and value encoding of the sled store.
//!
//! One tree, `jobs`, holds everything a job transition touches, so one `apply_batch` changes a
//! job atomically with whatever else the group commit carries:
//! - `j` + id (u64 big-endian): the [`JobRecord`], rewritten on every transition;
//! - `p` + id: the [`JobPayload`], written once;
//! - `a` + id + attempt (u32 big-endian): an [`crate::job::AttemptLog`], written once;
//! - `t` + id (u64 big-endian): a [`crate::trigger::TriggerRecord`], rewritten with the jobs
//!   each of its fires creates;
//! - `i` + id: the workflow instance and element of a job that names them (for listings by
//!   them), written once;
//! - `m` + name: store metadata (the job-id reservation, the next trigger id);
//! - `u` + tenant + NUL + type + NUL + idempotency key: the id (u64 big-endian) of the job
//!   created with that key, written with the job;
//! - `v` + id: the `u` key a job was created under, so that deleting the job frees the key;
//! - `k` + tenant + NUL + bucket + NUL + key: a key-value entry, its value stored as given
//!   (tenant and bucket names hold no NUL, so the layout is unambiguous).
//!
//! Other values are postcard with a leading format-version byte. Triggers are at version 2
//! (templates gained an idempotency key); version-1 triggers are read and upgraded.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::super::StoreError;
use crate::job::JobId;
use crate::trigger::{TriggerId, TriggerRecord};

pub const RECORD_PREFIX: u8 = b'j';
pub const PAYLOAD_PREFIX: u8 = b'p';
pub const ATTEMPT_PREFIX: u8 = b'a';
pub const TRIGGER_PREFIX: u8 = b't';
pub const PROCESS_PREFIX: u8 = b'i';
pub const KV_PREFIX: u8 = b'k';
pub const IDEMPOTENCY_PREFIX: u8 = b'u';
pub const IDEMPOTENCY_OF_PREFIX: u8 = b'v';
pub const ID_RESERVATION_KEY: &[u8] = b"mnext-id";
pub const NEXT_TRIGGER_ID_KEY: &[u8] = b"mnext-trigger-id";
const FORMAT_VERSION: u8 = 1;
/// The version of trigger records, whose layout changed after [`FORMAT_VERSION`].
const TRIGGER_FORMAT_VERSION: u8 = 2;

pub fn record_key(id: JobId) -> [u8; 9] {
    prefixed(RECORD_PREFIX, id)
}

pub fn payload_key(id: JobId) -> [u8; 9] {
    prefixed(PAYLOAD_PREFIX, id)
}

pub fn attempt_key(id: JobId, attempt: u32) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[..9].copy_from_slice(&prefixed(ATTEMPT_PREFIX, id));
    key[9..].copy_from_slice(&attempt.to_be_bytes());
    key
}

/// The key of a key-value entry; with an empty `key`, the prefix of a bucket's entries; with
/// an empty bucket too (and no second NUL), the prefix of a tenant's.
pub fn kv_key(tenant: &str, bucket: &str, key: &str) -> Vec<u8> {
    let mut stored = Vec::with_capacity(3 + tenant.len() + bucket.len() + key.len());
    stored.push(KV_PREFIX);
    stored.extend_from_slice(tenant.as_bytes());
    stored.push(0);
    stored.extend_from_slice(bucket.as_bytes());
    stored.push(0);
    stored.extend_from_slice(key.as_bytes());
    stored
}

/// The key under which the job created with an idempotency key is found.
pub fn idempotency_key(tenant: &str, job_type: &str, key: &str) -> Vec<u8> {
    let mut stored = Vec::with_capacity(3 + tenant.len() + job_type.len() + key.len());
    stored.push(IDEMPOTENCY_PREFIX);
    stored.extend_from_slice(tenant.as_bytes());
    stored.push(0);
    stored.extend_from_slice(job_type.as_bytes());
    stored.push(0);
    stored.extend_from_slice(key.as_bytes());
    stored
}

/// The key under which the idempotency key a job was created with is found.
pub fn idempotency_of_key(id: JobId) -> [u8; 9] {
    prefixed(IDEMPOTENCY_OF_PREFIX, id)
}

/// The prefix of every entry of a tenant.
pub fn kv_tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut prefix = vec![KV_PREFIX];
    prefix.extend_from_slice(tenant.as_bytes());
    prefix.push(0);
    prefix
}

/// The tenant, bucket and key of a stored key-value entry.
pub fn kv_parts(stored: &[u8]) -> Result<(&str, &str, &str), StoreError> {
    let corrupt = || StoreError::Corrupt("malformed key-value entry key".into());
    let rest = stored.strip_prefix(&[KV_PREFIX]).ok_or_else(corrupt)?;
    let mut parts = rest.splitn(3, |b| *b == 0);
    let mut next = || {
        parts
            .next()
            .and_then(|part| std::str::from_utf8(part).ok())
            .ok_or_else(corrupt)
    };
    Ok((next()?, next()?, next()?))
}

pub fn trigger_key(id: TriggerId) -> [u8; 9] {
    prefixed(TRIGGER_PREFIX, id)
}

pub fn prefixed(prefix: u8, id: JobId) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

/// The job id in a key made by [`prefixed`].
pub fn id_of(key: &[u8]) -> Result<JobId, StoreError> {
    key.get(1..9)
        .and_then(|bytes| bytes.try_into().ok())
        .map(JobId::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("malformed job key".into()))
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION];
    // Serializing plain structs of strings and numbers into a Vec cannot fail.
    bytes.extend(postcard::to_allocvec(value).expect("postcard encodes in-memory values"));
    bytes
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "unknown record format version {version}"
        ))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

pub fn io(error: sled::Error) -> StoreError {
    StoreError::Io(error.to_string())
}

/// A trigger record in its current layout.
pub fn encode_trigger(trigger: &TriggerRecord) -> Vec<u8> {
    let mut bytes = vec![TRIGGER_FORMAT_VERSION];
    bytes.extend(postcard::to_allocvec(trigger).expect("postcard encodes in-memory values"));
    bytes
}

/// A trigger record of either layout.
pub fn decode_trigger(bytes: &[u8]) -> Result<TriggerRecord, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(e.to_string());
    match bytes.split_first() {
        Some((&TRIGGER_FORMAT_VERSION, rest)) => postcard::from_bytes(rest).map_err(corrupt),
        Some((&FORMAT_VERSION, rest)) => postcard::from_bytes::<v1::TriggerRecord>(rest)
            .map(TriggerRecord::from)
            .map_err(corrupt),
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "unknown trigger format version {version}"
        ))),
        None => Err(StoreError::Corrupt("empty trigger record".into())),
    }
}

/// Trigger records as stored before templates had an idempotency key.
mod v1 {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use crate::job::{EpochMs, JobId};
    use crate::trigger::{JobTemplate, Overlap, Schedule, TriggerId};

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(serde::Serialize))]
    pub struct Template {
        variables: String,
        custom_headers: BTreeMap<String, String>,
        retries: i32,
        priority: i32,
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(serde::Serialize))]
    pub struct TriggerRecord {
        id: TriggerId,
        tenant: String,
        name: String,
        job_type: String,
        schedule: Schedule,
        template: Template,
        catch_up: bool,
        max_catch_up: u32,
        end_at: Option<EpochMs>,
        overlap: Overlap,
        enabled: bool,
        created_at: EpochMs,
        updated_at: EpochMs,
        next_fire: Option<EpochMs>,
        last_fire: Option<EpochMs>,
        last_job: Option<JobId>,
        fired: u64,
        skipped: u64,
        missed: u64,
        revision: u64,
    }

    impl From<TriggerRecord> for crate::trigger::TriggerRecord {
        fn from(old: TriggerRecord) -> Self {
            crate::trigger::TriggerRecord {
                id: old.id,
                tenant: old.tenant,
                name: old.name,
                job_type: old.job_type,
                schedule: old.schedule,
                template: JobTemplate {
                    variables: old.template.variables,
                    custom_headers: old.template.custom_headers,
                    retries: old.template.retries,
                    priority: old.template.priority,
                    idempotency_key: None,
                },
                catch_up: old.catch_up,
                max_catch_up: old.max_catch_up,
                end_at: old.end_at,
                overlap: old.overlap,
                enabled: old.enabled,
                created_at: old.created_at,
                updated_at: old.updated_at,
                next_fire: old.next_fire,
                last_fire: old.last_fire,
                last_job: old.last_job,
                fired: old.fired,
                skipped: old.skipped,
                missed: old.missed,
                revision: old.revision,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::store::sled_store::codec::{FORMAT_VERSION, decode_trigger, encode_trigger};
        use crate::trigger::Schedule;

        #[test]
        fn a_trigger_stored_before_template_keys_reads_back_without_a_key() {
            let old = TriggerRecord {
                id: 7,
                tenant: "acme".into(),
                name: "nightly".into(),
                job_type: "report".into(),
                schedule: Schedule::interval("1h").unwrap(),
                template: Template {
                    variables: r#"{"a":1}"#.into(),
                    custom_headers: BTreeMap::from([("h".into(), "v".into())]),
                    retries: 3,
                    priority: 5,
                },
                catch_up: true,
                max_catch_up: 10,
                end_at: None,
                overlap: Overlap::Skip,
                enabled: true,
                created_at: 1,
                updated_at: 2,
                next_fire: Some(3_600_000),
                last_fire: None,
                last_job: Some(9),
                fired: 4,
                skipped: 1,
                missed: 0,
                revision: 6,
            };
            let mut bytes = vec![FORMAT_VERSION];
            bytes.extend(postcard::to_allocvec(&old).unwrap());
            let read = decode_trigger(&bytes).unwrap();
            assert_eq!(read.name, "nightly");
            assert_eq!(read.template.priority, 5);
            assert_eq!(read.template.idempotency_key, None);
            assert_eq!((read.last_job, read.fired, read.revision), (Some(9), 4, 6));
            assert_eq!(decode_trigger(&encode_trigger(&read)).unwrap(), read);
        }
    }
}
