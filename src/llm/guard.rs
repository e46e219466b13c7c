//! What stands between a rewording and the endpoint: the daily request budget and the circuit
//! breaker, both judged against one [`Clock`].
//!
//! The budget is a rolling 24 hours: at most `llm.daily_request_budget` requests were sent in any
//! 24 hours, counted exactly from their send times (at most `budget` instants are kept). A rolling
//! window needs no time zone and cannot be doubled by a burst on both sides of midnight.
//! `governor` (already a dependency, used for the API's rate limits) is not used for it: its GCRA
//! refills continuously, so a bucket of `budget` refilling over 24 hours lets up to twice the
//! budget through in one 24-hour window, and it cannot say how many requests were sent, which the
//! status reports.
//!
//! The breaker is hand-written (about sixty lines): the circuit-breaker crates (`failsafe`,
//! `recloser`) wrap the call and classify its error themselves, but cannot be opened for a time
//! the server names (429 `Retry-After`), nor report when they close again for the status; and
//! they are not widely kept. Closed → open after [`FAILURES_TO_OPEN`] consecutive failures, for
//! [`OPEN_FOR`]; then half-open: one probe is let through, its success closes the breaker, its
//! failure opens it again. A 429 opens it until the server's `Retry-After` (or [`RATE_LIMITED_FOR`])
//! without counting as a failure: the server is well, only busy.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

/// Consecutive failures that open the breaker.
pub(crate) const FAILURES_TO_OPEN: u32 = 3;
/// How long the breaker stays open after failures.
pub(crate) const OPEN_FOR: Duration = Duration::from_secs(10 * 60);
/// How long a 429 without `Retry-After` pauses requests.
pub(crate) const RATE_LIMITED_FOR: Duration = Duration::from_secs(60);
/// The budget's window.
pub(crate) const BUDGET_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Monotonic time, which tests can move forward (production never does).
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    skew_ms: Arc<AtomicU64>,
}

impl Clock {
    /// Now.
    pub(crate) fn now(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.skew_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and its clones) forward by `by`.
    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skew_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BreakerState {
    /// Requests go through.
    Closed,
    /// Requests are refused until it half-opens.
    Open,
    /// The next request is a probe; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// Why a request may not be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The budget is used up; a request frees after the duration.
    Budget(Duration),
    /// The breaker is open (or its probe is in flight); try again after the duration.
    Breaker(Duration),
}

/// The budget and the breaker (kept under one lock, never held across an await).
#[derive(Debug)]
pub(crate) struct Guard {
    budget: u32,
    sent: VecDeque<Instant>,
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Guard {
    /// A guard allowing `budget` requests per rolling 24 hours, breaker closed.
    pub(crate) fn new(budget: u32) -> Self {
        Guard {
            budget,
            sent: VecDeque::new(),
            failures: 0,
            open_until: None,
            probing: false,
        }
    }

    /// Takes a budget unit and, when the breaker allows, the right to send one request; a
    /// half-open breaker lets one probe through at a time. `probe_wait`: what to tell callers
    /// refused while the probe is in flight.
    pub(crate) fn admit(&mut self, now: Instant, probe_wait: Duration) -> Result<(), Refusal> {
        self.forget(now);
        if let Some(until) = self.open_until {
            if now < until {
                return Err(Refusal::Breaker(until - now));
            }
            if self.probing {
                return Err(Refusal::Breaker(probe_wait));
            }
        }
        self.take(now)?;
        if self.open_until.is_some() {
            self.probing = true;
        }
        Ok(())
    }

    /// Takes one more budget unit for a request sent within an admitted one (a retry), without
    /// asking the breaker.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Refusal> {
        self.forget(now);
        if self.sent.len() >= self.budget as usize {
            let frees = self
                .sent
                .front()
                .map_or(Duration::ZERO, |first| (*first + BUDGET_WINDOW) - now);
            return Err(Refusal::Budget(frees));
        }
        self.sent.push_back(now);
        Ok(())
    }

    /// The request succeeded: the breaker closes.
    pub(crate) fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.probing = false;
    }

    /// The request failed: counted; the breaker opens at [`FAILURES_TO_OPEN`] in a row, or again
    /// at once when it was the half-open probe.
    pub(crate) fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.open_until.is_some() || self.failures >= FAILURES_TO_OPEN {
            self.open_until = Some(now + OPEN_FOR);
        }
        self.probing = false;
    }

    /// The server asked to wait (`429`): no request before `now + wait` (a longer pause already
    /// set is kept); not a failure.
    pub(crate) fn back_off(&mut self, now: Instant, wait: Duration) {
        let until = now + wait;
        self.open_until = Some(self.open_until.map_or(until, |u| u.max(until)));
        self.probing = false;
    }

    /// An admitted request ended without an outcome (its caller went away): a probe may be
    /// sent again.
    pub(crate) fn abandon(&mut self) {
        self.probing = false;
    }

    /// The breaker's state and, when open, how long until it half-opens.
    pub(crate) fn breaker(&self, now: Instant) -> (BreakerState, Option<Duration>) {
        match self.open_until {
            None => (BreakerState::Closed, None),
            Some(until) if now < until => (BreakerState::Open, Some(until - now)),
            Some(_) => (BreakerState::HalfOpen, None),
        }
    }

    /// Consecutive failures.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Requests sent in the last 24 hours.
    pub(crate) fn used(&mut self, now: Instant) -> u32 {
        self.forget(now);
        u32::try_from(self.sent.len()).unwrap_or(u32::MAX)
    }

    /// The daily budget.
    pub(crate) fn budget(&self) -> u32 {
        self.budget
    }

    fn forget(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= BUDGET_WINDOW)
        {
            self.sent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE_WAIT: Duration = Duration::from_secs(20);

    #[test]
    fn the_budget_is_a_rolling_day() {
        let start = Instant::now();
        let mut g = Guard::new(3);
        for hour in 0..3 {
            let now = start + Duration::from_secs(3600 * hour);
            assert_eq!(g.admit(now, PROBE_WAIT), Ok(()));
        }
        let now = start + Duration::from_secs(3 * 3600);
        assert_eq!(g.used(now), 3);
        // the first request was sent at `start`: it frees 24 h later
        assert_eq!(
            g.admit(now, PROBE_WAIT),
            Err(Refusal::Budget(
                BUDGET_WINDOW - Duration::from_secs(3 * 3600)
            ))
        );
        let now = start + BUDGET_WINDOW;
        assert_eq!(g.used(now), 2);
        assert_eq!(g.admit(now, PROBE_WAIT), Ok(()));
        assert!(g.take(now).is_err(), "a retry needs budget too");
    }

    #[test]
    fn three_failures_open_one_probe_closes_or_reopens() {
        let mut now = Instant::now();
        let mut g = Guard::new(1000);
        for i in 1..=FAILURES_TO_OPEN {
            assert_eq!(g.breaker(now).0, BreakerState::Closed, "{i}");
            assert_eq!(g.admit(now, PROBE_WAIT), Ok(()));
            g.failure(now);
        }
        assert_eq!(g.admit(now, PROBE_WAIT), Err(Refusal::Breaker(OPEN_FOR)));
        now += OPEN_FOR;
        assert_eq!(g.breaker(now).0, BreakerState::HalfOpen);
        assert_eq!(g.admit(now, PROBE_WAIT), Ok(()), "the probe");
        assert_eq!(
            g.admit(now, PROBE_WAIT),
            Err(Refusal::Breaker(PROBE_WAIT)),
            "one probe at a time"
        );
        g.failure(now);
        assert_eq!(g.breaker(now), (BreakerState::Open, Some(OPEN_FOR)));
        now += OPEN_FOR;
        assert_eq!(g.admit(now, PROBE_WAIT), Ok(()));
        g.abandon();
        assert_eq!(g.admit(now, PROBE_WAIT), Ok(()), "abandoned probe");
        g.success();
        assert_eq!(g.breaker(now), (BreakerState::Closed, None));
        assert_eq!(g.failures(), 0);
    }

    #[test]
    fn a_429_pauses_without_counting_as_a_failure() {
        let mut now = Instant::now();
        let mut g = Guard::new(1000);
        g.back_off(now, Duration::from_secs(30));
        g.back_off(now, Duration::from_secs(5));
        assert_eq!(g.failures(), 0);
        assert_eq!(
            g.admit(now, PROBE_WAIT),
            Err(Refusal::Breaker(Duration::from_secs(30))),
            "the longer pause is kept"
        );
        now += Duration::from_secs(30);
        assert_eq!(g.admit(now, PROBE_WAIT), Ok(()));
        g.success();
        assert_eq!(g.breaker(now).0, BreakerState::Closed);
    }

    #[test]
    fn the_clock_moves_its_clones() {
        let clock = Clock::default();
        let other = clock.clone();
        let before = other.now();
        clock.advance(OPEN_FOR);
        assert!(other.now() >= before + OPEN_FOR);
    }
}
