//! Request rates per API key: a sustained rate with a burst, enforced by one lock-free
//! bucket per key (the generic cell rate algorithm on a single atomic), so limiting adds no
//! lock to the request path.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many requests a key may make: `per_second` sustained, up to `burst` at once.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    /// Whether every request this limit admits is admitted by `other` too.
    pub fn within(&self, other: &RateLimit) -> bool {
        self.per_second <= other.per_second && self.burst <= other.burst
    }

    /// Checks a requested limit; both numbers must be positive.
    pub fn checked(per_second: u32, burst: u32) -> Result<RateLimit, String> {
        if per_second == 0 || burst == 0 {
            return Err(format!(
                "a rate limit needs a positive rate and burst, got {per_second}/s with burst {burst}"
            ));
        }
        Ok(RateLimit { per_second, burst })
    }
}

/// One key's bucket. `due` is the theoretical arrival time of the next request in
/// nanoseconds since the process started: a request is admitted while it is no more than the
/// burst's worth of intervals ahead of now.
#[derive(Debug)]
pub struct RateBucket {
    interval_ns: u64,
    tolerance_ns: u64,
    due: AtomicU64,
}

impl RateBucket {
    pub fn new(limit: RateLimit) -> RateBucket {
        let interval_ns = 1_000_000_000 / u64::from(limit.per_second.max(1));
        RateBucket {
            interval_ns: interval_ns.max(1),
            tolerance_ns: interval_ns.max(1) * u64::from(limit.burst.max(1)),
            due: AtomicU64::new(0),
        }
    }

    /// Admits a request now, or answers how long until one would be admitted.
    pub fn admit(&self) -> Result<(), Duration> {
        self.admit_at(process_nanos())
    }

    fn admit_at(&self, now: u64) -> Result<(), Duration> {
        let mut due = self.due.load(Ordering::Relaxed);
        loop {
            let next = due.max(now) + self.interval_ns;
            if next - now > self.tolerance_ns {
                return Err(Duration::from_nanos(next - now - self.tolerance_ns));
            }
            match self
                .due
                .compare_exchange_weak(due, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => due = current,
            }
        }
    }
}

/// A wait as HTTP's `Retry-After` gives it: whole seconds, rounded up, at least one.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn process_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn bucket(per_second: u32, burst: u32) -> RateBucket {
        RateBucket::new(RateLimit { per_second, burst })
    }

    #[test]
    fn a_burst_is_admitted_at_once_and_the_next_request_is_told_when_to_retry() {
        let bucket = bucket(10, 5);
        let now = 100 * SECOND;
        for _ in 0..5 {
            bucket.admit_at(now).expect("within the burst");
        }
        let wait = bucket.admit_at(now).expect_err("over the burst");
        assert_eq!(wait, Duration::from_millis(100));
    }

    #[test]
    fn the_sustained_rate_is_admitted_indefinitely() {
        let bucket = bucket(10, 1);
        for i in 0..1_000 {
            bucket
                .admit_at(100 * SECOND + i * SECOND / 10)
                .expect("one request per interval");
        }
    }

    #[test]
    fn an_idle_key_gets_its_burst_back_but_no_more() {
        let bucket = bucket(10, 3);
        let later = 1_000 * SECOND;
        for _ in 0..3 {
            bucket.admit_at(later).unwrap();
        }
        assert!(bucket.admit_at(later).is_err());
    }

    #[test]
    fn concurrent_requests_never_exceed_the_burst() {
        let bucket = std::sync::Arc::new(bucket(1, 100));
        let now = 100 * SECOND;
        let admitted: usize = (0..4)
            .map(|_| {
                let bucket = bucket.clone();
                std::thread::spawn(move || {
                    (0..100).filter(|_| bucket.admit_at(now).is_ok()).count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(admitted, 100);
    }

    #[test]
    fn a_limit_within_another_admits_no_more() {
        let parent = RateLimit::checked(100, 10).unwrap();
        assert!(RateLimit::checked(50, 10).unwrap().within(&parent));
        assert!(!RateLimit::checked(200, 10).unwrap().within(&parent));
        assert!(RateLimit::checked(0, 10).is_err());
    }
}
