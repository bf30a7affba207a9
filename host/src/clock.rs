//! The clock the trigger scheduler reads and sleeps on.
//!
//! Production uses [`SystemClock`]. [`ManualClock`] stands still until it is moved, so tests can
//! cross hours of schedule (missed fires, lifetimes, catch-up) without waiting for them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::job::{EpochMs, now_ms};

pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time in epoch milliseconds.
    fn now(&self) -> EpochMs;

    /// Resolves once [`Clock::now`] has reached `at`.
    fn sleep_until(&self, at: EpochMs) -> BoxFuture<'_, ()>;
}

/// Wall-clock time.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> EpochMs {
        now_ms()
    }

    fn sleep_until(&self, at: EpochMs) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // A sleep may end a little early on a coarse timer; it is repeated until the time
            // has really come, so nothing due is ever acted on before its time.
            loop {
                let left = at - now_ms();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(left as u64)).await;
            }
        })
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<EpochMs>,
}

impl ManualClock {
    pub fn new(start: EpochMs) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: watch::Sender::new(start),
        })
    }

    /// Moves the clock forward (never backward), waking the sleepers whose time has come.
    pub fn advance(&self, by: Duration) {
        self.now
            .send_modify(|now| *now += i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
    }

    /// Sets the clock to `at` if that is later than now.
    pub fn set(&self, at: EpochMs) {
        self.now.send_if_modified(|now| {
            let later = at > *now;
            if later {
                *now = at;
            }
            later
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> EpochMs {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: EpochMs) -> BoxFuture<'_, ()> {
        let mut changes = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock, which outlives this borrow.
            let _ = changes.wait_for(|now| *now >= at).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_a_sleeper_when_moved_past_its_time() {
        let clock = ManualClock::new(1_000);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(1_500).await })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(200));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_millis(300));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(clock.now(), 1_500);
    }

    #[test]
    fn a_manual_clock_never_goes_back() {
        let clock = ManualClock::new(1_000);
        clock.set(500);
        assert_eq!(clock.now(), 1_000);
        clock.set(2_000);
        assert_eq!(clock.now(), 2_000);
    }
}
