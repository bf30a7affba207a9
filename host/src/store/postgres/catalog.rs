//! The catalog port on PostgreSQL: keys and handlers as JSON documents by id, components by
//! hash, sealed secrets by tenant and name, the audit trail by a growing id. Every write is
//! one statement, committed (and flushed) before it returns.

use async_trait::async_trait;
use tokio_postgres::types::Json;

use super::{PgStore, db_error, from_json};
use crate::audit::{AuditEntry, AuditPage, AuditQuery, SCAN_PER_PAGE};
use crate::auth::ApiKeyRecord;
use crate::handler::HandlerRecord;
use crate::store::{Catalog, SecretRecord, StoreError};

/// Audit entries read per round trip while a page is looked for.
const AUDIT_ROWS_PER_READ: i64 = 500;

#[async_trait]
impl Catalog for PgStore {
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT record FROM jobhost_api_keys ORDER BY id", &[])
            .await
            .map_err(db_error)?;
        rows.into_iter().map(|row| from_json(row.get(0))).collect()
    }

    async fn put_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO jobhost_api_keys (id, record) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                &[&key.id, &Json(key)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM jobhost_api_keys WHERE id = $1", &[&id])
            .await
            .map_err(db_error)?;
        Ok(deleted > 0)
    }

    async fn handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT record FROM jobhost_handlers ORDER BY id", &[])
            .await
            .map_err(db_error)?;
        rows.into_iter().map(|row| from_json(row.get(0))).collect()
    }

    async fn put_handler(&self, handler: &HandlerRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO jobhost_handlers (id, record) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                &[&handler.id, &Json(handler)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn delete_handler(&self, id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM jobhost_handlers WHERE id = $1", &[&id])
            .await
            .map_err(db_error)?;
        Ok(deleted > 0)
    }

    async fn put_component(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO jobhost_components (sha256, bytes) VALUES ($1, $2)
                 ON CONFLICT (sha256) DO NOTHING",
                &[&sha256.as_slice(), &bytes],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn component(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT bytes FROM jobhost_components WHERE sha256 = $1",
                &[&sha256.as_slice()],
            )
            .await
            .map_err(db_error)?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn put_secret(&self, secret: &SecretRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO jobhost_secrets (tenant, name, sealed, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, name)
                 DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at",
                &[
                    &secret.tenant,
                    &secret.name,
                    &secret.sealed,
                    &secret.updated_at,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn secret(&self, tenant: &str, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT tenant, name, sealed, updated_at FROM jobhost_secrets
                 WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(db_error)?;
        Ok(row.map(|row| secret_of(&row)))
    }

    async fn secrets(&self, tenant: &str) -> Result<Vec<SecretRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT tenant, name, sealed, updated_at FROM jobhost_secrets
                 WHERE tenant = $1 ORDER BY name",
                &[&tenant],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(secret_of).collect())
    }

    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM jobhost_secrets WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(db_error)?;
        Ok(deleted > 0)
    }

    async fn record_audit(&self, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO jobhost_audit (entry) VALUES ($1) RETURNING id",
                &[&Json(&entry)],
            )
            .await
            .map_err(db_error)?;
        entry.id = row.get::<_, i64>(0) as u64;
        Ok(entry)
    }

    async fn audit_trail(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let client = self.client().await?;
        // Rows are read in rounds until the page can be cut: as many as the query's rule
        // (`AuditQuery::page`) may look at, and no more than it needs.
        let mut older = Vec::new();
        let mut before = query
            .before
            .map_or(i64::MAX, |id| i64::try_from(id).unwrap_or(i64::MAX));
        let mut matching = 0;
        while older.len() < SCAN_PER_PAGE && matching < query.limit {
            let rows = client
                .query(
                    "SELECT id, entry FROM jobhost_audit WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    &[&before, &AUDIT_ROWS_PER_READ],
                )
                .await
                .map_err(db_error)?;
            let Some(last) = rows.last() else { break };
            before = last.get(0);
            let read = rows.len();
            for row in rows {
                let mut entry: AuditEntry = from_json(row.get(1))?;
                entry.id = row.get::<_, i64>(0) as u64;
                matching += usize::from(query.matches(&entry));
                older.push(Ok(entry));
            }
            if read < AUDIT_ROWS_PER_READ as usize {
                break;
            }
        }
        query.page(older)
    }
}

fn secret_of(row: &tokio_postgres::Row) -> SecretRecord {
    SecretRecord {
        tenant: row.get(0),
        name: row.get(1),
        sealed: row.get(2),
        updated_at: row.get(3),
    }
}
