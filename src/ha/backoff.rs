//! Reconnect delays: exponential from a minimum to a maximum with ±10 % jitter.
//!
//! Written by hand because the retry crates jitter differently (`backon` adds a random amount up to
//! the whole delay); Home Assistant clients are expected to spread reconnects symmetrically around
//! the doubling schedule, which is a few lines.

use std::time::Duration;

use rand::Rng;

/// Relative jitter applied to every delay (±10 %).
pub(crate) const JITTER: f64 = 0.10;

/// Exponential back-off state: call [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: f64,
    max: f64,
    failures: u32,
}

impl Backoff {
    /// A back-off doubling from `min_secs` up to `max_secs`.
    pub(crate) fn new(min_secs: f64, max_secs: f64) -> Self {
        Backoff {
            min: min_secs.max(0.001),
            max: max_secs.max(min_secs),
            failures: 0,
        }
    }

    /// The delay before the next attempt, and one more failure counted.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.base_secs();
        self.failures = self.failures.saturating_add(1);
        let factor = 1.0 + rand::rng().random_range(-JITTER..=JITTER);
        Duration::from_secs_f64(base * factor)
    }

    /// The delay before jitter for the current number of failures.
    pub(crate) fn base_secs(&self) -> f64 {
        let exp = self.failures.min(63);
        (self.min * 2f64.powi(exp as i32)).min(self.max)
    }

    /// Failures counted since the last reset.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the minimum delay.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_five_minutes_with_bounded_jitter() {
        let mut b = Backoff::new(1.0, 300.0);
        let expected = [
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0,
        ];
        for base in expected {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= base * 0.9 - 1e-9 && d <= base * 1.1 + 1e-9,
                "{d} not within 10% of {base}"
            );
        }
        b.reset();
        assert_eq!(b.base_secs(), 1.0);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(1.0, 300.0);
            seen.insert(b.next_delay().as_millis());
        }
        assert!(
            seen.len() > 5,
            "jitter produced {} distinct delays",
            seen.len()
        );
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(1.0, 300.0);
        for _ in 0..10_000 {
            assert!(b.next_delay() <= Duration::from_secs(330));
        }
    }
}
