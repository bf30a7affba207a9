//! The PostgreSQL store, for several nodes over one database. It serves the catalog
//! ([`Catalog`](super::Catalog)) and key-value ([`KeyValueStore`](super::KeyValueStore))
//! ports, each checked by its part of the conformance suite; the queue, queries and trigger
//! ports are not built yet, so a server cannot run on it.
//!
//! Built on tokio-postgres with a deadpool pool: a plain async driver that gives the store its
//! own transactions and a connection of its own for LISTEN/NOTIFY, with no queries checked
//! against a database at build time (which would need one to build) and few dependencies.
//! The schema is created and upgraded at start-up by versioned migrations ([`schema`]), one
//! node at a time.

mod catalog;
mod key_value;
mod schema;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};

use super::{Lifecycle, StoreError};

/// Connections one node keeps to the database at most.
const POOL_SIZE: usize = 16;

/// The store over one PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    closed: AtomicBool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/database`) and brings
    /// its schema up to date.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Io(format!("invalid PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let store = PgStore {
            pool,
            closed: AtomicBool::new(false),
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(|error| match error {
            PoolError::Closed => StoreError::Closed,
            PoolError::Backend(error) => db_error(error),
            other => StoreError::Unavailable(other.to_string()),
        })
    }
}

#[async_trait]
impl Lifecycle for PgStore {
    async fn close(&self) -> Result<(), StoreError> {
        // Every write was committed (and so flushed) before it was answered.
        self.closed.store(true, Ordering::Release);
        self.pool.close();
        Ok(())
    }
}

/// A database error as the store reports it: a connection that failed or went away is
/// unavailability (retried by callers), anything else a storage failure.
fn db_error(error: tokio_postgres::Error) -> StoreError {
    if error.is_closed() || error.as_db_error().is_none() {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Io(error.to_string())
    }
}

/// A stored JSON document read back as the record it was written from.
fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;
    use std::sync::{Arc, LazyLock, Mutex};

    use sha2::Digest;

    use super::*;
    use crate::local_postgres::LocalPostgres;

    /// One server for the whole test run; each test directory gets a database of its own.
    static SERVER: LazyLock<LocalPostgres> =
        LazyLock::new(|| LocalPostgres::start().expect("a local PostgreSQL starts"));
    static DATABASES: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

    /// Opens (or reopens) the store of a test directory: its database, named after it.
    fn open(dir: &Path) -> Arc<PgStore> {
        let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let name = format!("t{}", &hex::encode(digest)[..16]);
        let url = {
            let mut created = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
            if created.insert(name.clone()) {
                SERVER.create_database(&name).expect("database created")
            } else {
                SERVER.url(&name)
            }
        };
        let connected = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(PgStore::connect(&url))
        });
        Arc::new(connected.expect("store connects"))
    }

    crate::store_conformance!(open, catalog);
    crate::store_conformance!(open, key_value);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_at_once_apply_each_migration_once() {
        let name = "migrations_at_once";
        let url = {
            DATABASES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.into());
            SERVER.create_database(name).expect("database created")
        };
        let nodes = (0..4).map(|_| PgStore::connect(&url));
        for connected in futures::future::join_all(nodes).await {
            connected.expect("every node starts");
        }
        let store = PgStore::connect(&url).await.expect("connects");
        let client = store.client().await.expect("client");
        let rows = client
            .query("SELECT version FROM jobhost_schema ORDER BY version", &[])
            .await
            .expect("versions");
        let versions: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
        assert_eq!(versions, schema::versions());
    }
}
