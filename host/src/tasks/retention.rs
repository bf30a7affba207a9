//! Retention: deletes the finished jobs the [`RetentionPolicy`] lets go, a small batch at a
//! time, so that the store's writer is never held up for long by a large backlog of them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::job::now_ms;
use crate::retention::RetentionPolicy;
use crate::store::JobStore;

/// Jobs deleted in one atomic write.
const BATCH: usize = 256;

/// Deletes expired jobs every `every` until `shutdown`; does nothing if the policy is off.
pub async fn run(
    store: Arc<dyn JobStore>,
    policy: RetentionPolicy,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if policy.is_off() {
        return;
    }
    tracing::info!(?policy, "retention deletes finished jobs");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match sweep(store.as_ref(), &policy).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "retention deleted finished jobs"),
            Err(error) => tracing::warn!(%error, "retention could not delete finished jobs"),
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Deletes every job expired as of now, [`BATCH`] at a time; answers how many were deleted.
pub async fn sweep(
    store: &dyn JobStore,
    policy: &RetentionPolicy,
) -> Result<usize, crate::store::StoreError> {
    let mut deleted = 0;
    loop {
        let expired = store.expired(policy, now_ms(), BATCH).await?;
        let found = expired.len();
        if found == 0 {
            return Ok(deleted);
        }
        let purged = store.purge(expired).await?;
        deleted += purged;
        // A batch that deleted nothing found only jobs changed meanwhile; the next round
        // sees them as they are now.
        if found < BATCH || purged == 0 {
            return Ok(deleted);
        }
        // Other commands queued behind this batch go first.
        tokio::task::yield_now().await;
    }
}
