//! Outlier detection (SPEC 8.3): a backend whose responses fail so many times in a row is
//! ejected for a while, as Envoy's `consecutive_5xx`. The state lives with the backend's
//! identity; the request path touches it with relaxed atomics only (a load when nothing
//! failed), and the ejection decision, rare, takes the cluster's lock to respect the cap.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::OutlierConfig;

/// The longest ejection, as a multiple of `ejection_time`.
pub const MAX_EJECTION_MULTIPLE: u32 = 10;

/// Milliseconds since the process's first look at this clock.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One backend's outlier state.
#[derive(Debug, Default)]
pub struct Outlier {
    /// Failed responses in a row.
    failures: AtomicU32,
    /// Ejected now (until `until_ms`).
    ejected: AtomicBool,
    until_ms: AtomicU64,
    /// Ejections in a row, without a success in between.
    streak: AtomicU32,
}

impl Outlier {
    /// A success: the failure run ends, and so does a streak of ejections.
    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.streak.load(Ordering::Relaxed) != 0 && !self.ejected.load(Ordering::Relaxed) {
            self.streak.store(0, Ordering::Relaxed);
        }
    }

    /// A failure: the length of the run it extends.
    pub fn failure(&self) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether it is ejected now: a relaxed load, and the clock only while ejected (the
    /// request path asks this for every candidate backend).
    pub fn is_ejected_now(&self) -> bool {
        self.ejected.load(Ordering::Relaxed) && self.is_ejected(now_ms())
    }

    /// Whether it is ejected at `now` (ms); an ejection that has run out ends here.
    pub fn is_ejected(&self, now: u64) -> bool {
        if !self.ejected.load(Ordering::Relaxed) {
            return false;
        }
        if now < self.until_ms.load(Ordering::Relaxed) {
            return true;
        }
        self.ejected.store(false, Ordering::Relaxed);
        false
    }

    /// Whether it is ejected, without ending a run-out ejection (for reports).
    pub fn ejected_flag(&self) -> bool {
        self.ejected.load(Ordering::Relaxed) && now_ms() < self.until_ms.load(Ordering::Relaxed)
    }

    /// Ejects it at `now` (ms) for `ejection_time` times 2^(ejections in a row), at most
    /// [`MAX_EJECTION_MULTIPLE`] times; returns how long.
    pub fn eject(&self, config: &OutlierConfig, now: u64) -> Duration {
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let multiple = 2u32.saturating_pow(streak - 1).min(MAX_EJECTION_MULTIPLE);
        let length = config.ejection_time * multiple;
        self.until_ms
            .store(now + length.as_millis() as u64, Ordering::Relaxed);
        self.ejected.store(true, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        length
    }
}

/// How many backends of `total` may be ejected at once: `max_ejected_percent` rounded down,
/// and never all of them.
pub fn ejection_cap(config: &OutlierConfig, total: usize) -> usize {
    (total * config.max_ejected_percent as usize / 100).min(total.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 3,
            ejection_time: Duration::from_secs(1),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn failures_count_in_a_row_and_a_success_ends_the_run() {
        let o = Outlier::default();
        assert_eq!((o.failure(), o.failure()), (1, 2));
        o.success();
        assert_eq!(o.failure(), 1);
    }

    #[test]
    fn ejections_in_a_row_double_up_to_ten_times() {
        let o = Outlier::default();
        let lengths: Vec<u64> = (0..6)
            .map(|i| {
                let now = i * 100_000;
                let length = o.eject(&config(), now).as_secs();
                assert!(o.is_ejected(now + length * 1000 - 1));
                assert!(!o.is_ejected(now + length * 1000));
                length
            })
            .collect();
        assert_eq!(lengths, [1, 2, 4, 8, 10, 10]);
        // A success after it came back starts over.
        o.success();
        assert_eq!(o.eject(&config(), 10_000_000).as_secs(), 1);
    }

    #[test]
    fn a_success_while_ejected_keeps_the_streak() {
        let o = Outlier::default();
        o.eject(&config(), 0);
        o.success();
        assert_eq!(o.eject(&config(), 5_000).as_secs(), 2);
    }

    #[test]
    fn the_cap_rounds_down_and_leaves_one() {
        let c = |pct, total| {
            ejection_cap(
                &OutlierConfig {
                    max_ejected_percent: pct,
                    ..config()
                },
                total,
            )
        };
        assert_eq!(c(50, 4), 2);
        assert_eq!(c(50, 3), 1);
        assert_eq!(c(50, 1), 0);
        assert_eq!(c(100, 4), 3);
        assert_eq!(c(100, 1), 0);
        assert_eq!(c(10, 5), 0);
        assert_eq!(c(0, 0), 0);
    }
}
