//! CPU lanes: how many Wasm attempts run guest code at once, and whose turn is next.
//!
//! An attempt holds a lane while its guest code runs. At every epoch tick it gives the lane
//! up if another attempt is waiting, and queues again. Waiting attempts are served tenant by
//! tenant in rotation, oldest first within a tenant, so a tenant with a deep backlog of
//! CPU-bound jobs delays another tenant's new job by about one tick, not by its backlog.
//! Without lanes every running attempt would share the cores through the async runtime's
//! queue, where a new attempt waits behind every busy one.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::runtime::{CpuTurns, Turn};

/// Lanes shared by every attempt of the server.
#[derive(Debug)]
pub struct CpuLanes {
    state: Mutex<LaneState>,
    /// Attempts waiting for a lane; read at every tick without the lock.
    waiting: AtomicUsize,
}

#[derive(Debug)]
struct LaneState {
    free: usize,
    /// Tenants with waiting attempts, in the order they are served; each with its waiters.
    rotation: VecDeque<(String, VecDeque<oneshot::Sender<Lane>>)>,
}

/// A lane held; given to the next waiter when dropped.
#[derive(Debug)]
pub struct Lane {
    /// `None` once the lane was passed on by other means.
    lanes: Option<Arc<CpuLanes>>,
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(lanes) = self.lanes.take() {
            lanes.release();
        }
    }
}

impl CpuLanes {
    pub fn new(lanes: usize) -> Arc<CpuLanes> {
        Arc::new(CpuLanes {
            state: Mutex::new(LaneState {
                free: lanes.max(1),
                rotation: VecDeque::new(),
            }),
            waiting: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a lane for an attempt of `tenant`.
    pub async fn acquire(self: &Arc<Self>, tenant: &str) -> Lane {
        let receiver = {
            let mut state = self.lock();
            if state.free > 0 && state.rotation.is_empty() {
                state.free -= 1;
                return Lane {
                    lanes: Some(self.clone()),
                };
            }
            let (sender, receiver) = oneshot::channel();
            match state.rotation.iter_mut().find(|(t, _)| t == tenant) {
                Some((_, waiters)) => waiters.push_back(sender),
                None => state
                    .rotation
                    .push_back((tenant.to_string(), VecDeque::from([sender]))),
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            receiver
        };
        // The sender is only dropped with a lane sent, and this future owns the receiver.
        receiver
            .await
            .unwrap_or_else(|_| unreachable!("a waiter's sender is never dropped unsent"))
    }

    /// Whether any attempt waits for a lane.
    pub fn contended(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Hands a freed lane to the next waiter in rotation, or keeps it free.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        while let Some((tenant, mut waiters)) = state.rotation.pop_front() {
            let Some(sender) = waiters.pop_front() else {
                continue;
            };
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            if !waiters.is_empty() {
                state.rotation.push_back((tenant, waiters));
            }
            let lane = Lane {
                lanes: Some(self.clone()),
            };
            match sender.send(lane) {
                Ok(()) => return,
                // The waiter is gone (its attempt ended); the lane must not release itself
                // here, under the lock, so this loop passes it on instead.
                Err(mut lane) => drop(lane.lanes.take()),
            }
        }
        state.free += 1;
    }

    /// The turns of one tenant's attempts, as the runtime takes them.
    pub fn for_tenant(self: &Arc<Self>, tenant: &str) -> Arc<dyn CpuTurns> {
        Arc::new(TenantTurns {
            lanes: self.clone(),
            tenant: tenant.to_string(),
        })
    }
}

struct TenantTurns {
    lanes: Arc<CpuLanes>,
    tenant: String,
}

impl CpuTurns for TenantTurns {
    fn take(&self) -> Pin<Box<dyn Future<Output = Turn> + Send>> {
        let lanes = self.lanes.clone();
        let tenant = self.tenant.clone();
        Box::pin(async move { Box::new(lanes.acquire(&tenant).await) as Turn })
    }

    fn contended(&self) -> bool {
        self.lanes.contended()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_free_lane_is_taken_at_once_and_given_back_on_drop() {
        let lanes = CpuLanes::new(1);
        let lane = lanes.acquire("acme").await;
        assert!(!lanes.contended());
        drop(lane);
        let _again = lanes.acquire("acme").await;
    }

    #[tokio::test]
    async fn waiting_tenants_take_turns_whatever_their_backlog() {
        let lanes = CpuLanes::new(1);
        let held = lanes.acquire("busy").await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (i, tenant) in ["busy", "busy", "busy", "quiet"].into_iter().enumerate() {
            let lanes = lanes.clone();
            let order_tx = order_tx.clone();
            waiters.push(tokio::spawn(async move {
                let lane = lanes.acquire(tenant).await;
                order_tx.send((i, tenant)).unwrap();
                drop(lane);
            }));
            // Queue in a known order.
            tokio::task::yield_now().await;
        }
        assert!(lanes.contended());
        drop(held);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        let served: Vec<_> = std::iter::from_fn(|| order.try_recv().ok()).collect();
        assert_eq!(
            served,
            vec![(0, "busy"), (3, "quiet"), (1, "busy"), (2, "busy")]
        );
    }

    #[tokio::test]
    async fn a_lane_granted_to_a_waiter_that_left_goes_to_the_next() {
        let lanes = CpuLanes::new(1);
        let held = lanes.acquire("a").await;
        let gone = tokio::spawn({
            let lanes = lanes.clone();
            async move { lanes.acquire("b").await }
        });
        tokio::task::yield_now().await;
        gone.abort();
        let _ = gone.await;
        let next = tokio::spawn({
            let lanes = lanes.clone();
            async move { drop(lanes.acquire("c").await) }
        });
        tokio::task::yield_now().await;
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), next)
            .await
            .expect("the lane reached the live waiter")
            .unwrap();
        assert!(!lanes.contended());
    }
}
