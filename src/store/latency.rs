//! The most recent write durations of a history writer, for the percentiles `/health/deep` and
//! the dashboard show (Prometheus gets the full histogram separately).

use std::collections::VecDeque;
use std::sync::Mutex;

/// Durations kept.
const KEPT: usize = 256;

/// A window of the last [`KEPT`] write durations, µs.
#[derive(Debug)]
pub(crate) struct RecentLatencies {
    window: Mutex<VecDeque<u32>>,
}

impl Default for RecentLatencies {
    fn default() -> Self {
        RecentLatencies {
            window: Mutex::new(VecDeque::with_capacity(KEPT)),
        }
    }
}

impl RecentLatencies {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u32>> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a duration, forgetting the oldest beyond the window.
    pub(crate) fn record(&self, us: u64) {
        let mut window = self.lock();
        if window.len() == KEPT {
            window.pop_front();
        }
        window.push_back(u32::try_from(us).unwrap_or(u32::MAX));
    }

    /// The median and 95th percentile of the window, ms (`None` before the first write).
    pub(crate) fn p50_p95_ms(&self) -> (Option<f64>, Option<f64>) {
        let mut recent: Vec<u32> = self.lock().iter().copied().collect();
        recent.sort_unstable();
        let at = |q: f64| {
            (!recent.is_empty()).then(|| {
                f64::from(recent[((recent.len() - 1) as f64 * q).round() as usize]) / 1000.0
            })
        };
        (at(0.5), at(0.95))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cover_the_last_window_only() {
        let recent = RecentLatencies::default();
        assert_eq!(recent.p50_p95_ms(), (None, None));
        for _ in 0..KEPT {
            recent.record(1_000_000);
        }
        for us in 1..=100 {
            recent.record(us * 1000);
        }
        // 156 slow ones left of the 256 kept
        let (p50, p95) = recent.p50_p95_ms();
        assert_eq!(p50, Some(1000.0));
        assert_eq!(p95, Some(1000.0));
        for us in 1..=KEPT as u64 {
            recent.record(us * 1000);
        }
        assert_eq!(recent.p50_p95_ms(), (Some(129.0), Some(243.0)));
    }
}
