//! A circuit breaker: after `threshold` failures in a row a dependency is
//! considered sick for `cool_down`, during which callers skip it at once
//! (and take their fallback) instead of waiting for it to fail again. When
//! the cool-down is over one call goes through as a trial: its success
//! closes the breaker, its failure opens it for another cool-down.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Milliseconds since the first breaker was consulted, never 0.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    threshold: u32,
    cool_down: Duration,
    failures: AtomicU32,
    /// 0 while closed; otherwise when the next trial call may go through.
    open_until_ms: AtomicU64,
}

impl Breaker {
    pub const fn new(name: &'static str, threshold: u32, cool_down: Duration) -> Self {
        Self { name, threshold, cool_down, failures: AtomicU32::new(0), open_until_ms: AtomicU64::new(0) }
    }

    /// Whether a call may go to the dependency now. While open: false, except
    /// for one trial call once each cool-down is over.
    pub fn allow(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = now_ms();
        if now < until {
            return false;
        }
        let next = now + self.cool_down.as_millis() as u64;
        self.open_until_ms.compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Whether the breaker is open (callers are skipping the dependency).
    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }

    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(dependency = self.name, "dependency answers again; calls resume");
        }
    }

    pub fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if failures >= self.threshold {
            let until = now_ms() + self.cool_down.as_millis() as u64;
            if self.open_until_ms.swap(until, Ordering::AcqRel) == 0 {
                tracing::warn!(
                    dependency = self.name,
                    failures,
                    cool_down_ms = self.cool_down.as_millis() as u64,
                    "dependency failing; calls skip it until a trial call succeeds"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_lets_one_trial_through() {
        let breaker = Breaker::new("test", 2, Duration::from_millis(30));
        assert!(breaker.allow());
        breaker.failure();
        assert!(breaker.allow(), "one failure is below the threshold");
        breaker.failure();
        assert!(!breaker.allow(), "open after two failures in a row");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !breaker.allow() {
            assert!(Instant::now() < deadline, "the cool-down ends");
            std::thread::yield_now();
        }
        assert!(!breaker.allow(), "only one trial call per cool-down");
        breaker.failure();
        assert!(!breaker.allow(), "a failed trial opens it again");
        breaker.success();
        assert!(breaker.allow() && breaker.allow() && !breaker.is_open());
    }

    #[test]
    fn a_success_resets_the_run_of_failures() {
        let breaker = Breaker::new("test", 2, Duration::from_secs(60));
        breaker.failure();
        breaker.success();
        breaker.failure();
        assert!(breaker.allow());
    }
}
