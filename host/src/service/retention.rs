//! Retention in the service core: deleting the finished jobs a [`RetentionPolicy`] lets go,
//! a small batch at a time, so that the store's writer is never held up for long.

use super::{JobService, ServiceError};
use crate::job::now_ms;
use crate::retention::RetentionPolicy;

/// Jobs deleted in one atomic write.
const BATCH: usize = 256;

impl JobService {
    /// Deletes every job expired as of now, a batch at a time; answers how many were deleted.
    pub async fn delete_expired(&self, policy: &RetentionPolicy) -> Result<usize, ServiceError> {
        let mut deleted = 0;
        loop {
            let expired = self.store.expired(policy, now_ms(), BATCH).await?;
            let found = expired.len();
            if found == 0 {
                return Ok(deleted);
            }
            let purged = self.store.purge(expired).await?;
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
}
