//! Event rates for the dashboard: events per second over the last minute and per minute over the
//! last hour, sampled once a second from the pipeline's event counter.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::ingest::IngestCounters;

/// Seconds kept at one-second resolution.
const SECONDS: usize = 60;
/// Minutes kept at one-minute resolution.
const MINUTES: usize = 60;

/// Events in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct MinuteCount {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// `state_changed` events received in it.
    pub events: u64,
}

#[derive(Debug, Default)]
struct Window {
    last_total: Option<u64>,
    seconds: VecDeque<u64>,
    minutes: VecDeque<MinuteCount>,
}

/// Sliding windows of event counts; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventRates {
    inner: Arc<Mutex<Window>>,
}

/// What the dashboard shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct RateSnapshot {
    /// Events in the last full second.
    pub per_second_now: u64,
    /// Mean events per second over the last minute (or as long as HomeIQ has run).
    pub per_second_avg_1m: f64,
    /// Events per second, the last 60 seconds, oldest first.
    pub last_minute: Vec<u64>,
    /// Events per minute, the last 60 minutes, oldest first (the current minute last).
    pub last_hour: Vec<MinuteCount>,
}

impl EventRates {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the counter's `total` at `now` (called once a second).
    pub(crate) fn sample(&self, total: u64, now: DateTime<Utc>) {
        let mut w = self.lock();
        let delta = w.last_total.map_or(0, |last| total.saturating_sub(last));
        w.last_total = Some(total);
        if w.seconds.len() == SECONDS {
            w.seconds.pop_front();
        }
        w.seconds.push_back(delta);
        let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
        match w.minutes.back_mut() {
            Some(m) if m.minute == minute => m.events += delta,
            _ => {
                if w.minutes.len() == MINUTES {
                    w.minutes.pop_front();
                }
                w.minutes.push_back(MinuteCount {
                    minute,
                    events: delta,
                });
            }
        }
    }

    /// The current windows.
    pub(crate) fn snapshot(&self) -> RateSnapshot {
        let w = self.lock();
        let sum: u64 = w.seconds.iter().sum();
        RateSnapshot {
            per_second_now: w.seconds.back().copied().unwrap_or(0),
            per_second_avg_1m: if w.seconds.is_empty() {
                0.0
            } else {
                sum as f64 / w.seconds.len() as f64
            },
            last_minute: w.seconds.iter().copied().collect(),
            last_hour: w.minutes.iter().copied().collect(),
        }
    }

    /// Samples `counters.events` every second until cancelled.
    pub(crate) async fn run(self, counters: Arc<IngestCounters>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => self.sample(counters.events.load(Ordering::Relaxed), Utc::now()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn windows_slide_and_minutes_accumulate() {
        let rates = EventRates::default();
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
            .single()
            .unwrap_or_default();
        rates.sample(100, t0); // first sample only sets the base
        for s in 1..=90 {
            rates.sample(100 + s * 10, t0 + TimeDelta::seconds(s as i64));
        }
        let snap = rates.snapshot();
        assert_eq!(snap.per_second_now, 10);
        assert_eq!(snap.last_minute.len(), 60);
        assert!((snap.per_second_avg_1m - 10.0).abs() < 1e-9);
        assert_eq!(snap.last_hour.len(), 2);
        assert_eq!(snap.last_hour[0].events, 590);
        assert_eq!(snap.last_hour[1].events, 310);
    }
}
