//! When analyses run: the nightly time on the home's wall clock, and the cooldown of requested
//! runs. Pure functions of the time they are given, so tests choose the clock.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The first instant after `now` when the home's wall clock (`tz`) shows `at`.
///
/// Across daylight-saving changes: a time the clock skips (02:30 on a spring-forward night) runs
/// at the first instant after the gap; a time it shows twice (an autumn night) runs at the first.
pub(crate) fn next_run_after(now: DateTime<Utc>, at: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let local_today = now.with_timezone(&tz).date_naive();
    for day in 0..3 {
        let date = local_today + Duration::days(day);
        let wall = date.and_time(at);
        let instant = match tz.from_local_datetime(&wall) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            // in the gap: the clock jumps over `at`; run when it lands
            chrono::LocalResult::None => {
                let mut probe = wall;
                let found = loop {
                    probe += Duration::minutes(1);
                    if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                        break Some(t.with_timezone(&Utc));
                    }
                    if probe - wall > Duration::hours(3) {
                        break None;
                    }
                };
                match found {
                    Some(t) => t,
                    None => continue,
                }
            }
        };
        if instant > now {
            return instant;
        }
    }
    // unreachable for real zones: a day later on the UTC clock
    now + Duration::days(1)
}

/// How long a requested run must still wait, when the last requested run started at `last` and
/// requested runs are `hours` apart; `None` when it may run now.
pub(crate) fn cooldown_left(
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    hours: u32,
) -> Option<std::time::Duration> {
    let last = last?;
    let free_at = last + Duration::hours(i64::from(hours));
    (free_at > now).then(|| (free_at - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("time")
    }

    #[test]
    fn the_nightly_run_follows_the_home_wall_clock_across_daylight_saving() {
        let ams: Tz = "Europe/Amsterdam".parse().expect("zone");
        // a winter night: 03:00 CET is 02:00 UTC
        assert_eq!(
            next_run_after(utc("2026-01-10T12:00:00Z"), hm(3, 0), ams),
            utc("2026-01-11T02:00:00Z")
        );
        // just before: today; at the instant itself: tomorrow
        assert_eq!(
            next_run_after(utc("2026-01-11T01:59:00Z"), hm(3, 0), ams),
            utc("2026-01-11T02:00:00Z")
        );
        assert_eq!(
            next_run_after(utc("2026-01-11T02:00:00Z"), hm(3, 0), ams),
            utc("2026-01-12T02:00:00Z")
        );
        // summer: 03:00 CEST is 01:00 UTC
        assert_eq!(
            next_run_after(utc("2026-07-01T12:00:00Z"), hm(3, 0), ams),
            utc("2026-07-02T01:00:00Z")
        );
        // spring forward (29 March 2026, 02:00 → 03:00): 02:30 does not exist, runs at 03:00 CEST
        assert_eq!(
            next_run_after(utc("2026-03-28T12:00:00Z"), hm(2, 30), ams),
            utc("2026-03-29T01:00:00Z")
        );
        // fall back (25 October 2026, 03:00 → 02:00): 02:30 happens twice, runs at the first
        assert_eq!(
            next_run_after(utc("2026-10-24T12:00:00Z"), hm(2, 30), ams),
            utc("2026-10-25T00:30:00Z")
        );
        let ny: Tz = "America/New_York".parse().expect("zone");
        assert_eq!(
            next_run_after(utc("2026-01-10T12:00:00Z"), hm(3, 0), ny),
            utc("2026-01-11T08:00:00Z")
        );
    }

    #[test]
    fn requested_runs_wait_out_the_cooldown() {
        let now = utc("2026-05-01T12:00:00Z");
        assert_eq!(cooldown_left(None, now, 24), None);
        assert_eq!(
            cooldown_left(Some(utc("2026-05-01T10:00:00Z")), now, 24),
            Some(std::time::Duration::from_secs(22 * 3600))
        );
        assert_eq!(
            cooldown_left(Some(utc("2026-04-30T12:00:00Z")), now, 24),
            None
        );
        assert_eq!(cooldown_left(Some(now), now, 0), None);
    }
}
