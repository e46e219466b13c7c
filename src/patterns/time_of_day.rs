//! Time-of-day habits: an entity reaching a state around the same local time.
//!
//! Streaming keeps only the time of each habit transition per (entity, state): 4 bytes each.
//! At the end, per (entity, state):
//!
//! 1. **Peaks.** The occurrences are placed on the 24-hour circle of the home's wall clock
//!    (23:50 and 00:10 are 20 minutes apart). The [`PEAK_WINDOW_SECONDS`] window on the circle
//!    holding the most distinct local days is a peak; it is re-centred on the circular mean of
//!    what it holds until that settles (mean shift), its occurrences are set aside and the
//!    search repeats, up to
//!    [`MAX_PEAKS`] peaks (a morning and an evening habit of the same light are two patterns).
//! 2. **One occurrence per local day**: of a day's occurrences in the peak, the one nearest its
//!    centre.
//! 3. **Per day type** (`all`, `weekday`, `weekend`): the days with an occurrence, the centre
//!    (circular mean) and spread (circular standard deviation) of their times, and the
//!    *eligible days*: the local dates of that type on which the window (from the first change
//!    read, so a home with less history is not penalised) contains the centre's time.
//!    - minimum occurrences: `ceil(min_occurrences × calendar days / window_days)`, where the
//!      calendar days are the eligible days of the whole configured window, so a daily pattern
//!      needs `min_occurrences` and a weekend one about 2/7 of it;
//!    - confidence: the share of eligible days with an occurrence, *above chance* — per eligible
//!      day, the larger of two chances that the entity reaches the state in a window of this
//!      width anyway: its *daily* chance, its other occurrences of the day (outside the peak)
//!      spread evenly over the rest of the day, `1 − exp(−n × width / (24 h − width))`; and its
//!      *local* chance, its rate on that day in the peak's neighbourhood — from the peak's edge
//!      to [`NEIGHBOURHOOD_SECONDS`] from its centre, either side, the peak itself left out —
//!      `1 − exp(−rate × width)` (a speaker flipping between playing and idle all evening has an
//!      occurrence in every evening hour: no evening window of it stands out from the hours
//!      around it; a light turned on once at 07:00 has a quiet neighbourhood); the mean of that
//!      over the eligible days is the `chance`, and
//!      `(share − chance) / (1 − chance)` what is left — times the spread penalty: 1 up to
//!      [`SPREAD_FREE_MINUTES`], falling linearly by [`MAX_SPREAD_PENALTY`] at
//!      [`SPREAD_FULL_MINUTES`] and beyond;
//!    - significance: the days with an occurrence must be unlikely by chance alone
//!      (binomial tail against the chance ≤ [`SIGNIFICANCE`], at each of
//!      [`TEST_WIDTHS_SECONDS`] around the centre, the best of them times their number: a tight
//!      habit stands out in a narrow window): the best window of the day is
//!      searched for, among thousands of entities, so a share above chance is not enough for an
//!      entity that changes dozens of times a day; and a `chance` above [`MAX_CHANCE`] has no
//!      habit to tell apart at all.
//! 4. **Which day type is reported**: a day type that passes alone is reported when the other's
//!    confidence is below [`DAY_TYPES_DIFFER`] of its own (a weekday-only habit is `weekday`,
//!    not a weak `all`); otherwise `all`, when it passes (a daily habit a little weaker at
//!    weekends, or a split that only rides on which days were missed). Never `all` and a day
//!    type for the same peak.
//!
//! Ids: a second peak of the same (entity, state, day type) gets its rank, counted from 04:00
//! local, in its id (see [`super::Pattern::id`]); the first peak's id has no rank, so a single
//! habit that drifts keeps its id.

use std::collections::HashMap;

use super::{
    Actors, Context, DAY, DayType, EVIDENCE_CAP, Key, KeyMap, Pattern, PatternEntity, PatternKind,
    TimeWindow, hm, instant, pattern_id,
};
use crate::store::origin::OriginKind;

/// Width of a peak on the 24-hour circle.
pub(crate) const PEAK_WINDOW_SECONDS: u32 = 3_600;
/// Mean-shift rounds that centre a peak.
const RECENTRE_ROUNDS: usize = 8;
/// Peaks looked for per (entity, state).
pub(crate) const MAX_PEAKS: usize = 4;
/// Spread (circular standard deviation) without penalty, minutes.
pub(crate) const SPREAD_FREE_MINUTES: f64 = 10.0;
/// Spread at which the full penalty applies, minutes.
/// (Occurrences spread evenly over the hour-long window, as chance puts them, have a spread of
/// about 17 minutes.)
pub(crate) const SPREAD_FULL_MINUTES: f64 = 30.0;
/// The largest share of confidence the spread takes away.
pub(crate) const MAX_SPREAD_PENALTY: f64 = 0.5;
/// A habit that passes on one day type only is reported for that day type when the other's
/// confidence is below this share of its own; otherwise the days do not differ and only `all`
/// can be reported.
pub(crate) const DAY_TYPES_DIFFER: f64 = 0.5;
/// The largest probability that chance alone gives the days with an occurrence (a binomial
/// test against the `chance` per day): the best of the 24 one-hour windows of thousands of
/// entities is searched for, so a share above chance is not enough.
pub(crate) const SIGNIFICANCE: f64 = 1e-6;
/// The window widths (centred on the peak) the significance is tested at: a tight habit stands
/// out from chance in a narrow window, which evenly spread chance occurrences do not fill.
pub(crate) const TEST_WIDTHS_SECONDS: [u32; 3] = [1_200, 2_400, PEAK_WINDOW_SECONDS];
/// The largest `chance` a habit can be told from: an entity that reaches the state within any
/// hour on most days anyway has no time of day to suggest.
pub(crate) const MAX_CHANCE: f64 = 0.5;
/// The neighbourhood of a peak, seconds either side of its centre: the entity's own
/// occurrences between the peak's edge ([`PEAK_WINDOW_SECONDS`] / 2 from the centre) and this far
/// from it, on the same day, give its local rate; chance is the larger of what that rate and the
/// daily rate put in the window (an entity busy all evening has no evening habit).
pub(crate) const NEIGHBOURHOOD_SECONDS: u32 = 3 * 3_600;
/// Local hour from which the peaks of one (entity, state, day type) are ranked for their ids.
const RANK_FROM_SECOND: u32 = 4 * 3_600;

/// Habit transitions per (entity, state), as seconds after the window's start.
#[derive(Default)]
pub(crate) struct Detector {
    occurrences: KeyMap<Key, Vec<u32>>,
    /// Who made them.
    actors: KeyMap<Key, Actors>,
}

/// One occurrence on the local clock.
#[derive(Debug, Clone, Copy)]
struct Point {
    offset: u32,
    /// Index of the local day in the analysis's days (its calendar date, until a peak assigns
    /// it the date its centre falls on).
    day: usize,
    /// Seconds since 1970-01-01 00:00 on the local wall clock.
    wall: i64,
    second: u32,
    weekend: bool,
}

/// The statistics of one day type in one peak.
struct DayTypeStats {
    day_type: DayType,
    chosen: Vec<Point>,
    centre: u32,
    spread_minutes: f64,
    eligible: u32,
    chance: f64,
    confidence: f64,
    passes: bool,
}

impl Detector {
    /// A habit transition of `key` at `offset`.
    pub(crate) fn push(&mut self, key: Key, offset: u32, origin: OriginKind) {
        self.occurrences.entry(key).or_default().push(offset);
        self.actors.entry(key).or_default().count(origin);
    }

    /// Who made the habit transitions of `key`.
    pub(crate) fn actors(&self, key: Key) -> Actors {
        self.actors.get(&key).copied().unwrap_or_default()
    }

    /// The habit transitions of `key`, in time order (after [`Detector::finish`]; before it, in
    /// arrival order).
    pub(crate) fn occurrences(&self, key: Key) -> &[u32] {
        self.occurrences.get(&key).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.occurrences
            .values()
            .map(|v| v.capacity() * 4 + 48)
            .sum::<usize>()
            + self.actors.capacity() * (std::mem::size_of::<(Key, Actors)>() + 1)
    }

    /// The time-of-day patterns.
    pub(crate) fn finish(&mut self, ctx: &Context<'_>) -> Vec<Pattern> {
        let first = super::Local::of(ctx.params.time_zone, ctx.base);
        let last = super::Local::of(ctx.params.time_zone, ctx.end);
        // local dates from the day before the window to the day after it: an occurrence
        // belongs to the day its peak's centre falls on (00:05 to the day before, for a 23:55
        // habit)
        let day0 = first.day - 1;
        let days: Vec<(chrono::NaiveDate, bool)> = (0..=(last.day - day0 + 1).max(0))
            .map(|i| {
                use chrono::Datelike;
                let date = first.date + chrono::Duration::days(i - 1);
                let weekend = matches!(date.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
                (date, weekend)
            })
            .collect();
        let mut keys: Vec<Key> = self.occurrences.keys().copied().collect();
        keys.sort_by(|a, b| (ctx.entity(*a), ctx.state(*a)).cmp(&(ctx.entity(*b), ctx.state(*b))));
        let mut patterns = Vec::new();
        for k in keys {
            let Some(offsets) = self.occurrences.get_mut(&k) else {
                continue;
            };
            offsets.sort_unstable();
            let points: Vec<Point> = offsets
                .iter()
                .map(|&offset| {
                    let l = ctx.local(offset);
                    Point {
                        offset,
                        day: usize::try_from(l.day - day0).unwrap_or(0),
                        wall: l.day * DAY + i64::from(l.second),
                        second: l.second,
                        weekend: l.weekend,
                    }
                })
                .collect();
            let mut found = peaks(ctx, k, &points, &days, day0);
            // rank the peaks of one day type from 04:00 for their ids
            found.sort_by_key(|(dt, s)| {
                (*dt, (s.centre + DAY as u32 - RANK_FROM_SECOND) % DAY as u32)
            });
            let mut rank = 0;
            let mut previous = None;
            for (day_type, s) in found {
                rank = if previous == Some(day_type) {
                    rank + 1
                } else {
                    0
                };
                previous = Some(day_type);
                let actors = self.actors(k);
                patterns.push(report(ctx, k, s, rank, actors));
            }
        }
        patterns
    }
}

/// The patterns of one (entity, state): each with the day type reported.
fn peaks(
    ctx: &Context<'_>,
    k: Key,
    points: &[Point],
    days: &[(chrono::NaiveDate, bool)],
    day0: i64,
) -> Vec<(DayType, DayTypeStats)> {
    let mut per_day = vec![0u32; days.len()];
    for p in points {
        if let Some(n) = per_day.get_mut(p.day) {
            *n += 1;
        }
    }
    let mut walls: Vec<i64> = points.iter().map(|p| p.wall).collect();
    walls.sort_unstable();
    let nb = Neighbourhood {
        walls: &walls,
        day0,
    };
    let mut remaining: Vec<Point> = points.to_vec();
    remaining.sort_by_key(|p| p.second);
    let mut out = Vec::new();
    for _ in 0..MAX_PEAKS {
        let Some((members, distinct)) = best_window(&remaining, days.len()) else {
            break;
        };
        if distinct < 2 {
            break;
        }
        // mean shift: re-centre on the circular mean of what the window holds until it settles
        // (the first window with the most days leans to the early side of a spread habit)
        let mut members = members;
        let mut centre = circular_mean(members.iter().map(|p| p.second)).0;
        for _ in 0..RECENTRE_ROUNDS {
            let recentred: Vec<Point> = remaining
                .iter()
                .copied()
                .filter(|p| distance(p.second, centre) * 2 <= PEAK_WINDOW_SECONDS)
                .collect();
            if distinct_days(&recentred, days.len()) + 1 < distinct {
                break; // walking off the peak
            }
            let next = circular_mean(recentred.iter().map(|p| p.second)).0;
            members = recentred;
            let settled = distance(next, centre) < 60;
            centre = next;
            if settled {
                break;
            }
        }
        out.extend(decide(ctx, k, &members, centre, days, &nb, &per_day));
        remaining.retain(|p| !members.iter().any(|m| m.offset == p.offset));
    }
    out
}

/// The window of [`PEAK_WINDOW_SECONDS`] on the circle holding the most distinct days: its
/// points and that number.
fn best_window(sorted: &[Point], n_days: usize) -> Option<(Vec<Point>, u32)> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let mut count = vec![0u32; n_days];
    let mut distinct = 0u32;
    let mut best = (0usize, 0usize, 0u32);
    let mut end = 0usize; // exclusive, in the doubled sequence
    let at = |i: usize| -> (u64, usize) {
        let p = sorted[i % n];
        (
            u64::from(p.second) + if i >= n { DAY as u64 } else { 0 },
            p.day,
        )
    };
    for start in 0..n {
        let (s0, _) = at(start);
        if end < start {
            end = start;
        }
        while end < start + n && at(end).0 < s0 + u64::from(PEAK_WINDOW_SECONDS) {
            let d = at(end).1;
            if let Some(c) = count.get_mut(d) {
                if *c == 0 {
                    distinct += 1;
                }
                *c += 1;
            }
            end += 1;
        }
        if distinct > best.2 {
            best = (start, end, distinct);
        }
        let d = at(start).1;
        if let Some(c) = count.get_mut(d) {
            *c -= 1;
            if *c == 0 {
                distinct -= 1;
            }
        }
    }
    let (start, end, distinct) = best;
    Some(((start..end).map(|i| sorted[i % n]).collect(), distinct))
}

fn distinct_days(points: &[Point], n_days: usize) -> u32 {
    let mut seen = vec![false; n_days];
    let mut n = 0;
    for p in points {
        if let Some(s) = seen.get_mut(p.day)
            && !*s
        {
            *s = true;
            n += 1;
        }
    }
    n
}

/// Seconds between two times of day on the circle (0..=43_200).
fn distance(a: u32, b: u32) -> u32 {
    let d = a.abs_diff(b) % DAY as u32;
    d.min(DAY as u32 - d)
}

/// Circular mean (second of the day) and standard deviation (minutes) of times of day.
fn circular_mean(seconds: impl Iterator<Item = u32>) -> (u32, f64) {
    let (mut x, mut y, mut n) = (0.0f64, 0.0f64, 0usize);
    for s in seconds {
        let a = f64::from(s) / DAY as f64 * std::f64::consts::TAU;
        x += a.cos();
        y += a.sin();
        n += 1;
    }
    if n == 0 {
        return (0, 0.0);
    }
    let (x, y) = (x / n as f64, y / n as f64);
    let angle = y.atan2(x).rem_euclid(std::f64::consts::TAU);
    let mean = (angle / std::f64::consts::TAU * DAY as f64).round() as u32 % DAY as u32;
    let r = (x * x + y * y).sqrt().clamp(1e-12, 1.0);
    let sd = (-2.0 * r.ln()).sqrt() / std::f64::consts::TAU * DAY as f64 / 60.0;
    (mean, sd)
}

/// P(X ≥ `k`) for X ~ Binomial(`n`, `p`): how likely chance alone gives `k` days of `n`.
fn binomial_tail(n: u32, k: u32, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // log pmf by recursion from pmf(k) = C(n, k) p^k (1-p)^(n-k), summed in log space
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let ln_choose = |k: u32| -> f64 {
        (1..=k)
            .map(|i| (f64::from(n - k + i) / f64::from(i)).ln())
            .sum()
    };
    let mut log_pmf = ln_choose(k) + f64::from(k) * lp + f64::from(n - k) * lq;
    let mut terms = vec![log_pmf];
    for j in k..n {
        log_pmf += (f64::from(n - j) / f64::from(j + 1)).ln() + lp - lq;
        terms.push(log_pmf);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>()).min(1.0)
}

/// The confidence factor of a spread.
fn spread_penalty(spread_minutes: f64) -> f64 {
    let over = ((spread_minutes - SPREAD_FREE_MINUTES)
        / (SPREAD_FULL_MINUTES - SPREAD_FREE_MINUTES))
        .clamp(0.0, 1.0);
    1.0 - MAX_SPREAD_PENALTY * over
}

/// Which day types of one peak are reported.
fn decide(
    ctx: &Context<'_>,
    k: Key,
    members: &[Point],
    centre: u32,
    days: &[(chrono::NaiveDate, bool)],
    nb: &Neighbourhood<'_>,
    per_day: &[u32],
) -> Vec<(DayType, DayTypeStats)> {
    // one occurrence per local day: the one nearest the centre, on the date the centre falls on
    let mut chosen: HashMap<usize, Point> = HashMap::new();
    for p in members {
        let mut p = *p;
        let day = (p.wall - i64::from(centre) + DAY / 2).div_euclid(DAY) - nb.day0;
        let Some((day, &(_, weekend))) = usize::try_from(day)
            .ok()
            .and_then(|d| days.get(d).map(|x| (d, x)))
        else {
            continue;
        };
        p.day = day;
        p.weekend = weekend;
        chosen
            .entry(p.day)
            .and_modify(|c| {
                if distance(p.second, centre) < distance(c.second, centre) {
                    *c = p;
                }
            })
            .or_insert(p);
    }
    let mut chosen: Vec<Point> = chosen.into_values().collect();
    chosen.sort_by_key(|p| p.offset);
    // the entity's other occurrences of the day: what lands in the window by chance
    let mut background = per_day.to_vec();
    for p in members {
        if let Some(n) = background.get_mut(p.day) {
            *n = n.saturating_sub(1);
        }
    }
    let limits = ctx.limits(k);
    let [all, weekday, weekend] =
        DayType::ALL.map(|dt| stats(ctx, dt, &chosen, days, &background, nb, limits));
    let differ = |one: &DayTypeStats, other: &DayTypeStats| {
        other.confidence < DAY_TYPES_DIFFER * one.confidence
    };
    match (weekday.passes, weekend.passes) {
        (true, false) if differ(&weekday, &weekend) => vec![(DayType::Weekday, weekday)],
        (false, true) if differ(&weekend, &weekday) => vec![(DayType::Weekend, weekend)],
        _ if all.passes => vec![(DayType::All, all)],
        _ => Vec::new(),
    }
}

fn stats(
    ctx: &Context<'_>,
    day_type: DayType,
    chosen: &[Point],
    days: &[(chrono::NaiveDate, bool)],
    background: &[u32],
    nb: &Neighbourhood<'_>,
    limits: super::Limits,
) -> DayTypeStats {
    let chosen: Vec<Point> = chosen
        .iter()
        .copied()
        .filter(|p| day_type.includes(p.weekend))
        .collect();
    let (centre, spread_minutes) = circular_mean(chosen.iter().map(|p| p.second));
    let tz = ctx.params.time_zone;
    let mut eligible = 0u32;
    let mut calendar = 0u32;
    // per test width: the sum over eligible days of the chance that the entity's other
    // occurrences of the day (spread evenly over the rest of it) land in a window that wide
    let mut chance_sums = [0.0f64; TEST_WIDTHS_SECONDS.len()];
    for (i, (date, weekend)) in days.iter().enumerate() {
        if !day_type.includes(*weekend) {
            continue;
        }
        let Some(t) = instant(tz, *date, centre) else {
            continue;
        };
        if t >= ctx.base && t < ctx.end {
            calendar += 1;
        }
        if t >= ctx.data_start && t < ctx.end {
            eligible += 1;
            let n = f64::from(background.get(i).copied().unwrap_or(0));
            let rate = nb.rate(i, centre);
            for (sum, w) in chance_sums.iter_mut().zip(TEST_WIDTHS_SECONDS) {
                let w = f64::from(w);
                let daily = 1.0 - (-n * w / (DAY as f64 - w)).exp();
                let local = 1.0 - (-rate * w).exp();
                *sum += daily.max(local);
            }
        }
    }
    let window_days = f64::from(ctx.params.window_days.max(1));
    let required = ((f64::from(limits.min_occurrences) * f64::from(calendar) / window_days).ceil()
        as u32)
        .max(1);
    let n = u32::try_from(chosen.len()).unwrap_or(u32::MAX);
    let chance_of = |sum: f64| {
        if eligible == 0 {
            0.0
        } else {
            sum / f64::from(eligible)
        }
    };
    // the peak's own width is the widest tested
    let full = chance_sums.last().copied().unwrap_or(0.0);
    let (chance, confidence) = if eligible == 0 {
        (0.0, 0.0)
    } else {
        let chance = chance_of(full);
        let share = (f64::from(n) / f64::from(eligible)).min(1.0);
        let above = if chance < 1.0 {
            ((share - chance) / (1.0 - chance)).max(0.0)
        } else {
            0.0
        };
        (
            chance,
            (above * spread_penalty(spread_minutes)).clamp(0.0, 1.0),
        )
    };
    // significance: the narrowest window that holds the habit tells it best from chance
    // (Bonferroni over the widths tried)
    let p_value = TEST_WIDTHS_SECONDS
        .iter()
        .zip(chance_sums)
        .map(|(&w, sum)| {
            let inside = chosen
                .iter()
                .filter(|p| distance(p.second, centre) * 2 <= w)
                .count();
            let inside = u32::try_from(inside).unwrap_or(u32::MAX);
            binomial_tail(eligible, inside, chance_of(sum)) * TEST_WIDTHS_SECONDS.len() as f64
        })
        .fold(1.0f64, f64::min);
    let significant = chance <= MAX_CHANCE && p_value <= SIGNIFICANCE;
    DayTypeStats {
        day_type,
        passes: n >= required && confidence >= limits.min_confidence && n > 0 && significant,
        chosen,
        centre,
        spread_minutes,
        eligible,
        chance,
        confidence,
    }
}

/// One (entity, state)'s occurrences on the local wall clock, for its local rate.
struct Neighbourhood<'a> {
    /// Seconds since 1970-01-01 00:00 on the local wall clock, sorted.
    walls: &'a [i64],
    /// Local day number of the analysis's first day index.
    day0: i64,
}

impl Neighbourhood<'_> {
    /// Occurrences per second around `centre` (second of the day) on day index `day`: between
    /// the peak's edge and [`NEIGHBOURHOOD_SECONDS`] from the centre, either side.
    fn rate(&self, day: usize, centre: u32) -> f64 {
        let day = i64::try_from(day).unwrap_or(0);
        let centre = (self.day0 + day) * DAY + i64::from(centre);
        let (edge, far) = (
            i64::from(PEAK_WINDOW_SECONDS / 2),
            i64::from(NEIGHBOURHOOD_SECONDS),
        );
        let count = |from: i64, to: i64| {
            self.walls.partition_point(|w| *w < to) - self.walls.partition_point(|w| *w < from)
        };
        let n = count(centre - far, centre - edge) + count(centre + edge + 1, centre + far + 1);
        n as f64 / (2 * (far - edge)) as f64
    }
}

/// The pattern of one reported day type.
fn report(ctx: &Context<'_>, k: Key, s: DayTypeStats, rank: usize, actors: Actors) -> Pattern {
    let entities = vec![PatternEntity {
        entity_id: ctx.entity(k).to_owned(),
        state: ctx.state(k).to_owned(),
    }];
    // earliest and latest occurrence around the centre
    let signed = |p: &Point| {
        let d = i64::from(p.second) - i64::from(s.centre);
        (d + DAY / 2).rem_euclid(DAY) - DAY / 2
    };
    let lo = s.chosen.iter().map(signed).min().unwrap_or(0);
    let hi = s.chosen.iter().map(signed).max().unwrap_or(0);
    let at = |d: i64| u32::try_from((i64::from(s.centre) + d).rem_euclid(DAY)).unwrap_or(0);
    let first_seen = s.chosen.first().map_or(0, |p| p.offset);
    let last_seen = s.chosen.last().map_or(0, |p| p.offset);
    let skip = s.chosen.len().saturating_sub(EVIDENCE_CAP);
    Pattern {
        id: pattern_id(PatternKind::TimeOfDay, &entities, s.day_type, rank),
        kind: PatternKind::TimeOfDay,
        entities,
        day_type: s.day_type,
        time_window: Some(TimeWindow {
            start: hm(at(lo)),
            end: hm(at(hi)),
            centre: hm(s.centre),
            spread_minutes: (s.spread_minutes * 10.0).round() / 10.0,
        }),
        delay: None,
        occurrences: u32::try_from(s.chosen.len()).unwrap_or(u32::MAX),
        eligible_days: Some(s.eligible),
        trigger_occurrences: None,
        confidence: round3(s.confidence),
        chance: Some(round3(s.chance)),
        lift: None,
        first_seen: ctx.utc(first_seen),
        last_seen: ctx.utc(last_seen),
        evidence: s.chosen[skip..]
            .iter()
            .map(|p| ctx.occurrence(p.offset, None))
            .collect(),
        actors,
    }
}

/// Three decimals, for numbers people read.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circular_statistics_wrap_at_midnight() {
        let (mean, sd) = circular_mean([23 * 3600 + 50 * 60, 10 * 60].into_iter());
        assert_eq!(mean, 0);
        assert!((sd - 10.0).abs() < 0.1, "{sd}");
        assert_eq!(distance(23 * 3600 + 50 * 60, 10 * 60), 20 * 60);
        assert!((spread_penalty(5.0) - 1.0).abs() < 1e-9);
        assert!((spread_penalty(20.0) - 0.75).abs() < 1e-9);
        assert!((spread_penalty(90.0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn binomial_tails() {
        assert!((binomial_tail(10, 0, 0.3) - 1.0).abs() < 1e-12);
        assert!((binomial_tail(2, 1, 0.5) - 0.75).abs() < 1e-12);
        assert!((binomial_tail(3, 3, 0.5) - 0.125).abs() < 1e-12);
        // and a tail far below f64's smallest pmf(0)
        assert!((binomial_tail(30, 28, 0.82) - 0.0740).abs() < 0.001);
        let tiny = binomial_tail(366, 300, 0.05);
        assert!(tiny > 0.0 && tiny < 1e-200, "{tiny}");
        assert_eq!(binomial_tail(5, 6, 0.5), 0.0);
    }
}
