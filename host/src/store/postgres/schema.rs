//! The database schema as numbered migrations, each applied once, in order, in one
//! transaction with its record in `jobhost_schema`. Nodes starting at once take turns on an
//! advisory lock, so each migration runs exactly once; a database migrated by a newer jobhost
//! is refused rather than misread.

use super::{StoreError, db_error};

/// Every migration, by version.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("0001_catalog.sql"))];

/// The advisory lock migrations are applied under ("jobhost" in ASCII).
const MIGRATION_LOCK: i64 = 0x006a_6f62_686f_7374;

/// The versions this jobhost knows, oldest first.
#[cfg(test)]
pub fn versions() -> Vec<i32> {
    MIGRATIONS.iter().map(|(version, _)| *version).collect()
}

/// Applies the migrations the database lacks.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let transaction = client.transaction().await.map_err(db_error)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS jobhost_schema (
                version INT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(db_error)?;
    let applied: Option<i32> = transaction
        .query_one("SELECT max(version) FROM jobhost_schema", &[])
        .await
        .map_err(db_error)?
        .get(0);
    let applied = applied.unwrap_or(0);
    let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if applied > known {
        return Err(StoreError::Io(format!(
            "the database's schema is at version {applied}, newer than this jobhost knows \
             ({known}); run a jobhost at least as new as the one that migrated it"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > applied) {
        transaction.batch_execute(sql).await.map_err(db_error)?;
        transaction
            .execute(
                "INSERT INTO jobhost_schema (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(db_error)?;
        tracing::info!(version, "database schema migrated");
    }
    transaction.commit().await.map_err(db_error)
}
