//! Retention: asks the service core, every round, to delete the finished jobs the
//! [`RetentionPolicy`] lets go.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::retention::RetentionPolicy;
use crate::service::JobService;

/// Deletes expired jobs every `every` until `shutdown`; does nothing if the policy is off.
pub async fn run(
    service: Arc<JobService>,
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
        match service.delete_expired(&policy).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "retention deleted finished jobs"),
            Err(error) => tracing::warn!(%error, "retention could not delete finished jobs"),
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
