//! Period boundaries: UTC-aligned 5 minutes and hours, the home's local days.

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;

/// µs in a second.
pub(crate) const SEC: i64 = 1_000_000;
/// µs in five minutes.
pub(crate) const FIVE_MINUTES: i64 = 300 * SEC;
/// µs in an hour.
pub(crate) const HOUR: i64 = 3_600 * SEC;

/// `t` rounded down to a multiple of `step`.
pub(crate) fn floor(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step)
}

/// `t` rounded up to a multiple of `step`.
pub(crate) fn ceil(t: i64, step: i64) -> i64 {
    let f = floor(t, step);
    if f == t { t } else { f.saturating_add(step) }
}

/// `from`, every multiple of `step` strictly between, and `to` (`from < to`).
pub(crate) fn bounds(from: i64, to: i64, step: i64) -> Vec<i64> {
    let mut out = vec![from];
    let mut t = floor(from, step) + step;
    while t < to {
        out.push(t);
        t += step;
    }
    if to > from {
        out.push(to);
    }
    out
}

/// The first instant of local `date` in `tz`, µs (a day starting in a DST gap starts at the
/// gap's end).
pub(crate) fn local_midnight(tz: Tz, date: NaiveDate) -> i64 {
    for minutes in (0..=180).step_by(15) {
        let Some(naive) = date.and_hms_opt(0, 0, 0) else {
            break;
        };
        let naive = naive + chrono::Duration::minutes(minutes);
        if let Some(t) = tz.from_local_datetime(&naive).earliest() {
            return t.timestamp_micros();
        }
    }
    // unreachable for real zones: fall back to UTC midnight
    date.and_hms_opt(0, 0, 0)
        .map_or(0, |n| n.and_utc().timestamp_micros())
}

/// The local date at instant `t` (µs).
pub(crate) fn local_date(tz: Tz, t: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

/// The start of the local day holding `t`.
pub(crate) fn day_start(tz: Tz, t: i64) -> i64 {
    local_midnight(tz, local_date(tz, t))
}

/// The start of the local day after the one starting at (or holding) `t`.
pub(crate) fn next_day(tz: Tz, t: i64) -> i64 {
    let date = local_date(tz, t);
    date.succ_opt()
        .map_or(t + 24 * HOUR, |next| local_midnight(tz, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let tz: Tz = "Europe/Amsterdam".parse().expect("tz");
        let spring = local_midnight(tz, NaiveDate::from_ymd_opt(2026, 3, 29).expect("d"));
        assert_eq!(next_day(tz, spring) - spring, 23 * HOUR);
        let autumn = local_midnight(tz, NaiveDate::from_ymd_opt(2026, 10, 25).expect("d"));
        assert_eq!(next_day(tz, autumn) - autumn, 25 * HOUR);
        assert_eq!(day_start(tz, autumn + 24 * HOUR), autumn);
    }

    #[test]
    fn bounds_cut_at_multiples() {
        assert_eq!(bounds(5, 25, 10), vec![5, 10, 20, 25]);
        assert_eq!(bounds(10, 20, 10), vec![10, 20]);
        assert_eq!((floor(-5, 10), ceil(-5, 10), ceil(10, 10)), (-10, 0, 10));
    }
}
