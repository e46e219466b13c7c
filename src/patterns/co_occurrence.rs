//! Co-occurrences: B reaches a state within `co_occurrence_window_seconds` after A reaches one
//! (a door opens, the hallway light is turned on within a minute).
//!
//! Streaming: the transitions of the last window are kept (every trigger-capable transition,
//! automated ones included: a door opened by anything can precede a light turned on by hand).
//! When a habit transition B arrives, each distinct (entity, state) A among them — the most
//! recent occurrence of each, never B's own entity — counts once for the pair (A, B): an A
//! occurrence followed by several B's counts once, so the **support** is the number of A
//! occurrences followed by B. **Confidence** = support / occurrences of A. **Lift** =
//! confidence / the share of the analysed time within which B follows a random moment (the union
//! of the windows before each B occurrence): how much more likely B is after A than at all.
//!
//! A pair is reported when, with the thresholds of B's domain, support ≥ `min_support`,
//! confidence ≥ `min_confidence`, lift ≥ [`MIN_LIFT`], it beats its local baselines (below),
//! A accounts for at least [`MIN_TARGET_SHARE`] of B's occurrences (below), its delays are
//! consistent — interquartile
//! range ≤ [`MAX_IQR_FRACTION`] of the window (delays independent of A spread evenly over the
//! window, an IQR of half of it; the replaced system's "> 30 min" rule assumed far longer
//! windows) — and the median delay is at least [`MIN_DELAY_SECONDS`] (two entities changing
//! within a second are one action: a scene, a group, one device reporting two entities).
//! The delay's median and IQR are of the most recent [`EVIDENCE_CAP`] occurrences (the evidence),
//! its min and max of all.
//!
//! **Local baselines.** The lift above compares with B's rate over the whole month, which an
//! entity busy only in some hours (a plug toggled every few minutes while people are awake)
//! beats against any trigger active in the same hours. So each candidate pair is also compared
//! with *control moments*, in three families: every occurrence of A moved *earlier* by each of
//! [`MINUTE_SHIFTS_SECONDS`], the same moved *later* (B's activity in the hours before and after
//! A), and A moved by each of [`DAY_SHIFTS`] whole days, both ways (B at the same time of day on
//! other days: two entities that follow the same clock). Control moments outside the time with
//! history are skipped. For each family, the share of control moments B follows within the window
//! is B's local chance; the pair's confidence (over the A occurrences since it was created) must
//! be at least [`MIN_LOCAL_LIFT`] times the largest of the three. A door that opens at any hour,
//! followed by the hall light within a minute, has local chances of a few percent; two plugs busy
//! in the same evening hours follow their control moments about as often as each other. Before
//! and after are apart because of **common causes**: someone comes home (or wakes) and both A and
//! B start — A once, B busy from then on. B is quiet before A and busy after it, so the hours
//! *around* A, taken together, look half as busy as B is after A, and the pair passed; B follows
//! the moments 20 and 40 minutes after A as often as A itself, which tells that the home's state,
//! not A, brings B. (Leaving or going to sleep is the same, mirrored.) A real sequence's target is
//! as quiet after the sequence as before it. The reported `lift` stays the one against the month.
//!
//! **Share of B.** A pair whose A precedes fewer than [`MIN_TARGET_SHARE`] of B's occurrences is
//! not reported: B happens almost always without A. A plug switched by someone dozens of times a
//! day follows anything that happens while people are at home within a few minutes, at a rate
//! that varies with the hour and the day, and among the thousands of pairs with such a B some
//! beat every baseline by chance; a routine worth automating ("when A, then B") is one B mostly
//! takes part in. The door that turns the hall light on at two of its eight daily uses is 25 %.
//!
//! Memory: the recent buffer holds one window of transitions; the times of every transition
//! per (entity, state), 4 bytes each, give the control moments of A (B's are the habit
//! transitions [`time_of_day`] keeps; the same order of memory, not more). The pair table is
//! bounded: beyond [`PAIR_CAP`] pairs or [`STORED_DELAYS_CAP`] kept delays it is pruned — first pairs
//! whose A occurred at least [`HOPELESS_MIN_TRIGGERS`] times since the pair was created and
//! whose confidence over those is below [`HOPELESS_FRACTION`] of the lowest minimum confidence
//! (a motion sensor before a light turned on by hand now and then), then, while still above
//! half the caps, the least confident pairs. A pair that comes back starts again
//! (its support counts from then: a pair confident enough to be a pattern is not pruned in
//! practice). The number of pruned pairs is reported in the run's statistics.

use std::collections::{HashMap, VecDeque};

use super::{
    Context, DayType, Delay, EVIDENCE_CAP, Key, KeyMap, KeySet, Params, Pattern, PatternEntity,
    PatternKind, key_entity, pattern_id, time_of_day, time_of_day::round3,
};

// a pair's ring position is a u8
const _: () = assert!(EVIDENCE_CAP <= 256);

/// The lift a pair needs.
pub(crate) const MIN_LIFT: f64 = 2.0;
/// The largest interquartile range of the delays, as a share of the window.
pub(crate) const MAX_IQR_FRACTION: f64 = 0.25;
/// The shortest median delay, seconds.
pub(crate) const MIN_DELAY_SECONDS: u32 = 2;
/// Pairs kept at most.
pub(crate) const PAIR_CAP: usize = 100_000;
/// Control shifts within the day, seconds: earlier ones (B's rate in the hours before A's
/// occurrences) and later ones (after them) are two families, so two entities busy in the same
/// hours, or both started by a common cause, are not a sequence.
pub(crate) const MINUTE_SHIFTS_SECONDS: [i64; 2] = [1_200, 2_400];
/// Control shifts by whole days (each taken earlier and later): B at the same time of day on
/// other days, so two entities that follow the same clock are not a sequence of each other.
pub(crate) const DAY_SHIFTS: [i64; 3] = [1, 2, 3];
/// The lift a pair needs against each family of control moments: its confidence must be at
/// least this times the share of control moments B follows within the window.
pub(crate) const MIN_LOCAL_LIFT: f64 = 2.0;
/// The smallest share of B's occurrences a pair's support must be: below it, B happens almost
/// always without A.
pub(crate) const MIN_TARGET_SHARE: f64 = 0.05;
/// Delays (with their times) kept at most over all pairs.
pub(crate) const STORED_DELAYS_CAP: usize = 1_000_000;
/// Occurrences of A (since the pair was created) after which a pair far below the lowest
/// minimum confidence is dropped.
pub(crate) const HOPELESS_MIN_TRIGGERS: u32 = 20;
/// "Far below": this share of the lowest minimum confidence.
pub(crate) const HOPELESS_FRACTION: f64 = 0.5;

/// One (A, B) pair.
struct Pair {
    support: u32,
    /// Occurrences of A before the one that created the pair (a pruned pair that comes back
    /// is judged on what followed).
    trigger_base: u32,
    /// The A occurrence last counted (so one A followed by two B's counts once).
    last_trigger: u32,
    first: u32,
    min_delay: u32,
    max_delay: u32,
    /// The most recent (B time, delay): a ring once full, the oldest at `head`. Empty while
    /// the support is 1 (the one occurrence is `first` and `min_delay`): most pairs never get a
    /// second, and allocating for each of millions of them costs time and memory.
    recent: Vec<(u32, u32)>,
    head: u8,
}

impl Pair {
    /// The kept (B time, delay), oldest first.
    fn ordered(&self) -> Vec<(u32, u32)> {
        if self.recent.is_empty() {
            return vec![(self.first, self.min_delay)];
        }
        let (newer, older) = self.recent.split_at(usize::from(self.head));
        older.iter().chain(newer).copied().collect()
    }
}

pub(crate) struct Detector {
    window: u32,
    lowest_confidence: f64,
    recent: VecDeque<(u32, Key)>,
    triggers: KeyMap<Key, u32>,
    /// Every transition's time per (entity, state), for the control moments of A.
    times: KeyMap<Key, Vec<u32>>,
    pairs: KeyMap<(Key, Key), Pair>,
    stored: usize,
    pruned: u64,
    seen: KeySet,
}

impl Detector {
    pub(crate) fn new(params: &Params) -> Self {
        Detector {
            window: params.co_occurrence_window_seconds,
            lowest_confidence: params.thresholds.lowest_confidence(),
            recent: VecDeque::new(),
            triggers: KeyMap::default(),
            times: KeyMap::default(),
            pairs: KeyMap::default(),
            stored: 0,
            pruned: 0,
            seen: KeySet::default(),
        }
    }

    /// A transition of `k` at `t`; `habit`: it can be the B of a pair (a target domain, not
    /// automated).
    pub(crate) fn push(&mut self, k: Key, t: u32, habit: bool) {
        while self
            .recent
            .front()
            .is_some_and(|(ta, _)| u64::from(*ta) + u64::from(self.window) < u64::from(t))
        {
            self.recent.pop_front();
        }
        if habit {
            self.seen.clear();
            for &(ta, ka) in self.recent.iter().rev() {
                if key_entity(ka) == key_entity(k) || !self.seen.insert(ka) || ta > t {
                    continue;
                }
                let delay = t - ta;
                let base = self
                    .triggers
                    .get(&ka)
                    .copied()
                    .unwrap_or(1)
                    .saturating_sub(1);
                let pair = self.pairs.entry((ka, k)).or_insert_with(|| Pair {
                    support: 0,
                    trigger_base: base,
                    last_trigger: ta,
                    first: t,
                    min_delay: delay,
                    max_delay: delay,
                    recent: Vec::new(),
                    head: 0,
                });
                if pair.support > 0 && pair.last_trigger == ta {
                    continue;
                }
                if pair.support == 1 && pair.recent.is_empty() {
                    // the second occurrence: the first one moves to the list
                    pair.recent.push((pair.first, pair.min_delay));
                    self.stored += 1;
                }
                pair.support += 1;
                pair.last_trigger = ta;
                pair.min_delay = pair.min_delay.min(delay);
                pair.max_delay = pair.max_delay.max(delay);
                if pair.support == 1 {
                    // kept in `first` and `min_delay`
                } else if pair.recent.len() >= EVIDENCE_CAP {
                    let head = usize::from(pair.head);
                    pair.recent[head] = (t, delay);
                    pair.head = u8::try_from((head + 1) % EVIDENCE_CAP).unwrap_or(0);
                } else {
                    self.stored += 1;
                    pair.recent.push((t, delay));
                }
            }
        }
        *self.triggers.entry(k).or_insert(0) += 1;
        self.times.entry(k).or_default().push(t);
        self.recent.push_back((t, k));
        if self.pairs.len() > PAIR_CAP || self.stored > STORED_DELAYS_CAP {
            self.prune();
        }
    }

    fn prune(&mut self) {
        let before = self.pairs.len();
        let triggers = &self.triggers;
        // the confidence of a pair since it was created
        let confidence = |(a, _): &(Key, Key), p: &Pair| {
            let n = triggers
                .get(a)
                .copied()
                .unwrap_or(0)
                .saturating_sub(p.trigger_base)
                .max(1);
            (f64::from(p.support) / f64::from(n), n)
        };
        let floor = self.lowest_confidence * HOPELESS_FRACTION;
        let mut doomed = Vec::new();
        let mut ranked: Vec<(f64, usize, (Key, Key))> = Vec::with_capacity(self.pairs.len());
        for (k, p) in &self.pairs {
            let (c, n) = confidence(k, p);
            if n >= HOPELESS_MIN_TRIGGERS && c < floor {
                doomed.push((*k, p.recent.len()));
            } else {
                ranked.push((c, p.recent.len(), *k));
            }
        }
        for (k, stored) in doomed {
            self.pairs.remove(&k);
            self.stored -= stored;
        }
        let (keep_pairs, keep_stored) = (PAIR_CAP / 2, STORED_DELAYS_CAP / 2);
        if ranked.len() > keep_pairs || self.stored > keep_stored {
            // the least confident go first
            let mut cut = ranked.len().saturating_sub(keep_pairs);
            if cut > 0 {
                ranked.select_nth_unstable_by(cut - 1, |x, y| x.0.total_cmp(&y.0));
            }
            let mut stored = self.stored - ranked[..cut].iter().map(|r| r.1).sum::<usize>();
            if stored > keep_stored {
                // the delays decide: rank them all
                ranked.sort_by(|x, y| x.0.total_cmp(&y.0));
                stored = self.stored - ranked[..cut].iter().map(|r| r.1).sum::<usize>();
                while stored > keep_stored && cut < ranked.len() {
                    stored -= ranked[cut].1;
                    cut += 1;
                }
            }
            for (_, _, k) in &ranked[..cut] {
                self.pairs.remove(k);
            }
            self.stored = stored;
        }
        self.pruned += (before - self.pairs.len()) as u64;
    }

    pub(crate) fn pruned(&self) -> u64 {
        self.pruned
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.recent.capacity() * 16
            + self.triggers.capacity() * 16
            + self
                .times
                .values()
                .map(|v| v.capacity() * 4 + 48)
                .sum::<usize>()
            + self.seen.capacity() * 8
            + self
                .pairs
                .values()
                .map(|p| p.recent.capacity() * 8)
                .sum::<usize>()
            + self.pairs.capacity() * (16 + std::mem::size_of::<Pair>() + 8)
    }

    /// The co-occurrence patterns; `habits` holds every B's occurrences (for its base rate).
    pub(crate) fn finish(&self, ctx: &Context<'_>, habits: &time_of_day::Detector) -> Vec<Pattern> {
        let duration = (ctx.end - ctx.data_start).max(1) as f64;
        let mut base_rates: HashMap<Key, f64> = HashMap::new();
        let mut out = Vec::new();
        for (&(a, b), pair) in &self.pairs {
            let limits = ctx.limits(b);
            let triggers = self.triggers.get(&a).copied().unwrap_or(0).max(1);
            let confidence = f64::from(pair.support) / f64::from(triggers);
            if pair.support < limits.min_support || confidence < limits.min_confidence {
                continue;
            }
            let b_times = habits.occurrences(b);
            if f64::from(pair.support) < MIN_TARGET_SHARE * b_times.len() as f64 {
                continue;
            }
            let kept = pair.ordered();
            let mut delays: Vec<u32> = kept.iter().map(|(_, d)| *d).collect();
            delays.sort_unstable();
            let (q1, median, q3) = (
                quantile(&delays, 0.25),
                quantile(&delays, 0.5),
                quantile(&delays, 0.75),
            );
            let iqr = q3 - q1;
            if median < f64::from(MIN_DELAY_SECONDS)
                || iqr > MAX_IQR_FRACTION * f64::from(self.window)
            {
                continue;
            }
            let base = *base_rates
                .entry(b)
                .or_insert_with(|| coverage(habits.occurrences(b), self.window, ctx) / duration);
            let lift = confidence / base.max(1e-9);
            if lift < MIN_LIFT {
                continue;
            }
            // against control moments: A's occurrences shifted within the day, and by days
            let since = triggers.saturating_sub(pair.trigger_base).max(1);
            let local_confidence = (f64::from(pair.support) / f64::from(since)).min(1.0);
            let a_times = self.times.get(&a).map_or(&[][..], Vec::as_slice);
            let before = MINUTE_SHIFTS_SECONDS.map(|s| -s);
            let before = control_rate(a_times, b_times, &before, self.window, ctx);
            let after = control_rate(a_times, b_times, &MINUTE_SHIFTS_SECONDS, self.window, ctx);
            let day_shifts = DAY_SHIFTS
                .iter()
                .flat_map(|d| [-d * super::DAY, d * super::DAY])
                .collect::<Vec<_>>();
            let days = control_rate(a_times, b_times, &day_shifts, self.window, ctx);
            if local_confidence < MIN_LOCAL_LIFT * before.max(after).max(days) {
                continue;
            }
            let entities = vec![
                PatternEntity {
                    entity_id: ctx.entity(a).to_owned(),
                    state: ctx.state(a).to_owned(),
                },
                PatternEntity {
                    entity_id: ctx.entity(b).to_owned(),
                    state: ctx.state(b).to_owned(),
                },
            ];
            out.push(Pattern {
                id: pattern_id(PatternKind::CoOccurrence, &entities, DayType::All, 0),
                kind: PatternKind::CoOccurrence,
                entities,
                day_type: DayType::All,
                time_window: None,
                delay: Some(Delay {
                    median_seconds: median.round() as u32,
                    min_seconds: pair.min_delay,
                    max_seconds: pair.max_delay,
                    iqr_seconds: iqr.round() as u32,
                }),
                occurrences: pair.support,
                eligible_days: None,
                trigger_occurrences: Some(triggers),
                confidence: round3(confidence.min(1.0)),
                chance: None,
                lift: Some((lift * 100.0).round() / 100.0),
                first_seen: ctx.utc(pair.first),
                last_seen: ctx.utc(kept.last().map_or(pair.first, |(t, _)| *t)),
                evidence: kept
                    .iter()
                    .map(|(t, d)| ctx.occurrence(*t, Some(*d)))
                    .collect(),
                actors: habits.actors(b),
            });
        }
        out.sort_by(|x, y| {
            let names = |p: &Pattern| {
                p.entities
                    .iter()
                    .map(|e| (e.entity_id.clone(), e.state.clone()))
                    .collect::<Vec<_>>()
            };
            names(x).cmp(&names(y))
        });
        out
    }
}

/// The `q` quantile of sorted values, linearly interpolated.
fn quantile(sorted: &[u32], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil().min((n - 1) as f64) as usize;
            let (a, b) = (f64::from(sorted[lo]), f64::from(sorted[hi]));
            a + (b - a) * (pos - lo as f64)
        }
    }
}

/// The share of control moments — each of `a` (sorted) moved by each of `shifts` (seconds,
/// negative: earlier), within the time with history — that an occurrence of `b` (sorted)
/// follows within `window`.
fn control_rate(a: &[u32], b: &[u32], shifts: &[i64], window: u32, ctx: &Context<'_>) -> f64 {
    let (from, to) = (
        ctx.data_start - ctx.base,
        ctx.end - ctx.base - i64::from(window),
    );
    let (mut moments, mut followed) = (0u32, 0u32);
    for &ta in a {
        for &shift in shifts {
            let m = i64::from(ta) + shift;
            if m < from || m > to {
                continue;
            }
            moments += 1;
            // the first occurrence of b after m
            let i = b.partition_point(|&t| i64::from(t) <= m);
            if b.get(i)
                .is_some_and(|&t| i64::from(t) <= m + i64::from(window))
            {
                followed += 1;
            }
        }
    }
    if moments == 0 {
        0.0
    } else {
        f64::from(followed) / f64::from(moments)
    }
}

/// Seconds of the analysed time after which B follows within `window`: the union of the
/// windows before each occurrence of B (sorted), clipped to the time with history.
fn coverage(occurrences: &[u32], window: u32, ctx: &Context<'_>) -> f64 {
    let data_start = u64::try_from(ctx.data_start - ctx.base).unwrap_or(0);
    let mut covered = 0u64;
    let mut reach = data_start; // covered up to here
    for &t in occurrences {
        let t = u64::from(t);
        let from = t.saturating_sub(u64::from(window)).max(reach);
        if t > from {
            covered += t - from;
        }
        reach = reach.max(t);
    }
    covered as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        assert!((quantile(&[10, 20, 30, 40, 50], 0.5) - 30.0).abs() < 1e-9);
        assert!((quantile(&[10, 20, 30, 40], 0.5) - 25.0).abs() < 1e-9);
        assert!((quantile(&[10, 20, 30, 40, 50], 0.25) - 20.0).abs() < 1e-9);
        assert!((quantile(&[7], 0.75) - 7.0).abs() < 1e-9);
    }
}
