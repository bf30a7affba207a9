//! The key-value port on PostgreSQL. A write locks its tenant's usage row, decides against the
//! entry as it stands ([`crate::kv::decide`], [`crate::kv::check_quota`]) and writes the entry
//! and the usage in one transaction, so counters, swaps and quotas hold with writers on every
//! node.

use async_trait::async_trait;

use super::{PgStore, db_error};
use crate::kv::{self, KvBucket, KvKey, KvKeys, KvLimits, KvOp, KvOutcome, KvUsage};
use crate::store::{KeyValueStore, KvWriteError, StoreError};

#[async_trait]
impl KeyValueStore for PgStore {
    async fn kv_write(
        &self,
        key: KvKey,
        op: KvOp,
        limits: KvLimits,
    ) -> Result<KvOutcome, KvWriteError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(db_error)?;
        transaction
            .execute(
                "INSERT INTO jobhost_kv_usage (tenant, keys, bytes) VALUES ($1, 0, 0)
                 ON CONFLICT (tenant) DO NOTHING",
                &[&key.tenant],
            )
            .await
            .map_err(db_error)?;
        let usage = transaction
            .query_one(
                "SELECT keys, bytes FROM jobhost_kv_usage WHERE tenant = $1 FOR UPDATE",
                &[&key.tenant],
            )
            .await
            .map_err(db_error)?;
        let usage = KvUsage {
            keys: usage.get::<_, i64>(0) as u64,
            bytes: usage.get::<_, i64>(1) as u64,
        };
        let current: Option<Vec<u8>> = transaction
            .query_opt(
                "SELECT value FROM jobhost_kv WHERE tenant = $1 AND bucket = $2 AND key = $3",
                &[&key.tenant, &key.bucket, &key.key],
            )
            .await
            .map_err(db_error)?
            .map(|row| row.get(0));
        // A refusal drops the transaction: nothing is written.
        let (new, outcome) = kv::decide(&key.key, op, current.as_deref())?;
        if new == current {
            return Ok(outcome);
        }
        let usage = kv::check_quota(usage, &key.key, current.as_deref(), new.as_deref(), &limits)?;
        match &new {
            Some(value) => {
                transaction
                    .execute(
                        "INSERT INTO jobhost_kv (tenant, bucket, key, value)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (tenant, bucket, key) DO UPDATE SET value = EXCLUDED.value",
                        &[&key.tenant, &key.bucket, &key.key, value],
                    )
                    .await
            }
            None => {
                transaction
                    .execute(
                        "DELETE FROM jobhost_kv WHERE tenant = $1 AND bucket = $2 AND key = $3",
                        &[&key.tenant, &key.bucket, &key.key],
                    )
                    .await
            }
        }
        .map_err(db_error)?;
        transaction
            .execute(
                "UPDATE jobhost_kv_usage SET keys = $2, bytes = $3 WHERE tenant = $1",
                &[&key.tenant, &(usage.keys as i64), &(usage.bytes as i64)],
            )
            .await
            .map_err(db_error)?;
        transaction.commit().await.map_err(db_error)?;
        Ok(outcome)
    }

    async fn kv_get(&self, key: &KvKey) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT value FROM jobhost_kv WHERE tenant = $1 AND bucket = $2 AND key = $3",
                &[&key.tenant, &key.bucket, &key.key],
            )
            .await
            .map_err(db_error)?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn kv_keys(
        &self,
        tenant: &str,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KvKeys, StoreError> {
        let client = self.client().await?;
        // One more than asked tells whether another page follows.
        let rows = client
            .query(
                "SELECT key FROM jobhost_kv
                 WHERE tenant = $1 AND bucket = $2 AND ($3::TEXT IS NULL OR key > $3)
                 ORDER BY key LIMIT $4",
                &[&tenant, &bucket, &after, &(limit as i64 + 1)],
            )
            .await
            .map_err(db_error)?;
        let mut keys: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        let next = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            None
        };
        Ok(KvKeys { keys, next })
    }

    async fn kv_buckets(&self, tenant: &str) -> Result<Vec<KvBucket>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT bucket, count(*), sum(octet_length(key) + octet_length(value))::BIGINT
                 FROM jobhost_kv WHERE tenant = $1 GROUP BY bucket ORDER BY bucket",
                &[&tenant],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| KvBucket {
                name: row.get(0),
                usage: KvUsage {
                    keys: row.get::<_, i64>(1) as u64,
                    bytes: row.get::<_, i64>(2) as u64,
                },
            })
            .collect())
    }
}
