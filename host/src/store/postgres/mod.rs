//! The PostgreSQL store, for several nodes over one database. It serves the catalog
//! ([`Catalog`](super::Catalog)) and key-value ([`KeyValueStore`](super::KeyValueStore))
//! ports, each checked by its part of the conformance suite, and relays signals between the
//! nodes on one database ([`relay`]); the queue, queries and trigger ports are not built yet,
//! so a server cannot run on it.
//!
//! Built on tokio-postgres with a deadpool pool: a plain async driver that gives the store its
//! own transactions and a connection of its own for LISTEN/NOTIFY, with no queries checked
//! against a database at build time (which would need one to build) and few dependencies.
//! The schema is created and upgraded at start-up by versioned migrations ([`schema`]), one
//! node at a time.

mod catalog;
mod key_value;
mod relay;
#[cfg(test)]
pub(crate) use relay::relayed_bus;
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
    /// For connections of the store's own, outside the pool (listening for notifications).
    config: tokio_postgres::Config,
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
            config.clone(),
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
            config,
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
    use std::path::Path;
    use std::sync::Arc;

    use sha2::Digest;

    use super::*;
    use crate::local_postgres::test_database;
    use crate::signals::{Received, Signal, Signals};

    /// Opens (or reopens) the store of a test directory: its database, named after it.
    fn open(dir: &Path) -> Arc<PgStore> {
        let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let url = test_database(&format!("t{}", &hex::encode(digest)[..16]));
        let connected = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(PgStore::connect(&url))
        });
        Arc::new(connected.expect("store connects"))
    }

    crate::store_conformance!(open, catalog);
    crate::store_conformance!(open, key_value);

    /// The next thing a subscriber receives, within seconds.
    async fn next(subscription: &mut crate::signals::Subscription) -> Received {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), subscription.recv());
        next.await
            .expect("a signal arrives")
            .expect("the bus is open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signals_published_on_one_node_reach_the_other_once() {
        let url = test_database("relay");
        let here = PgStore::connect(&url).await.expect("connects");
        let there = PgStore::connect(&url).await.expect("connects");
        let (on_here, on_there) = (Signals::default(), Signals::default());
        let (mut at_here, mut at_there) = (on_here.subscribe(), on_there.subscribe());
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        here.relay_signals(on_here.clone(), stopping.clone());
        there.relay_signals(on_there.clone(), stopping.clone());
        // Each node re-reads once it listens: what changed before could not reach it.
        assert_eq!(next(&mut at_here).await, Received::Missed);
        assert_eq!(next(&mut at_there).await, Received::Missed);

        let revoked = Signal::KeyChanged("k1".into());
        on_here.publish(revoked.clone());
        assert_eq!(next(&mut at_here).await, Received::Signal(revoked.clone()));
        assert_eq!(next(&mut at_there).await, Received::Signal(revoked));
        let cancelled = Signal::JobCancelled(7);
        on_there.publish(cancelled.clone());
        assert_eq!(
            next(&mut at_there).await,
            Received::Signal(cancelled.clone())
        );
        // Not its own key signal back first: each signal reaches each node once.
        assert_eq!(next(&mut at_here).await, Received::Signal(cancelled));
        // Nor anything later: no echo of either signal reaches either node.
        for subscription in [&mut at_here, &mut at_there] {
            let more =
                tokio::time::timeout(std::time::Duration::from_millis(500), subscription.recv());
            assert!(more.await.is_err(), "a signal arrived twice");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_at_once_apply_each_migration_once() {
        let url = test_database("migrations_at_once");
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
