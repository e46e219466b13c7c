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
//! bounded: co-occurrences are collected in batches of [`MERGE_BATCH`] and counted into the
//! pairs (a vector sorted by the pair's dense key ids) in one merge after a radix sort; when a
//! merge leaves more than [`PAIR_CAP`] pairs or [`STORED_DELAYS_CAP`] kept delays the table is
//! pruned — first pairs whose A occurred at least [`HOPELESS_MIN_TRIGGERS`] times since the pair
//! was created and whose confidence over those is below [`HOPELESS_FRACTION`] of the lowest
//! minimum confidence (a motion sensor before a light turned on by hand now and then), and
//! pairs seen once whose A has occurred more than [`STALE_SEED_TRIGGERS`] times since, then,
//! while still above half the caps, the least confident pairs. A pair that comes back starts again
//! (its support counts from then: a pair confident enough to be a pattern is not pruned in
//! practice). The number of pruned pairs is reported in the run's statistics.

use std::collections::{HashMap, VecDeque};

use super::{
    Context, DayType, Delay, EVIDENCE_CAP, Key, KeyMap, Params, Pattern, PatternEntity,
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
/// A pair seen once is dropped at a prune when its A has occurred more than this many times
/// since (its confidence is at most a quarter: B followed one of them).
pub(crate) const STALE_SEED_TRIGGERS: u32 = 4;

/// One (A, B) pair: 32 bytes, as the merge moves every pair at each batch.
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
    /// The most recent occurrences once there are two (while the support is 1, the one
    /// occurrence is `first` and `min_delay`: most pairs never get a second, and allocating for
    /// each of millions of them costs time and memory).
    recent: Option<Box<Ring>>,
}

/// The most recent (B time, delay) of a pair: a ring once full, the oldest at `head`.
struct Ring {
    items: Vec<(u32, u32)>,
    head: u8,
}

impl Pair {
    /// The pair `s` creates.
    fn new(s: &Seen) -> Self {
        Pair {
            support: 0,
            trigger_base: s.base,
            last_trigger: s.t - s.delay,
            first: s.t,
            min_delay: s.delay,
            max_delay: s.delay,
            recent: None,
        }
    }

    /// Occurrences kept in the ring.
    fn kept(&self) -> usize {
        self.recent.as_ref().map_or(0, |r| r.items.len())
    }

    /// Counts `s` (B after A); returns the delays newly kept.
    fn count(&mut self, s: &Seen) -> usize {
        let (t, delay, ta) = (s.t, s.delay, s.t - s.delay);
        if self.support > 0 && self.last_trigger == ta {
            return 0;
        }
        // while the support is at most 1: the first occurrence's delay
        let first_delay = self.min_delay;
        self.support += 1;
        self.last_trigger = ta;
        self.min_delay = self.min_delay.min(delay);
        self.max_delay = self.max_delay.max(delay);
        if self.support == 1 {
            return 0; // kept in `first` and `min_delay`
        }
        let first = self.first;
        let ring = self.recent.get_or_insert_with(|| {
            // the second occurrence: the first one moves to the ring
            Box::new(Ring {
                items: Vec::new(),
                head: 0,
            })
        });
        let mut stored = 0;
        if ring.items.is_empty() {
            ring.items.push((first, first_delay));
            stored += 1;
        }
        if ring.items.len() >= EVIDENCE_CAP {
            let head = usize::from(ring.head);
            ring.items[head] = (t, delay);
            ring.head = u8::try_from((head + 1) % EVIDENCE_CAP).unwrap_or(0);
        } else {
            stored += 1;
            ring.items.push((t, delay));
        }
        stored
    }

    /// The kept (B time, delay), oldest first.
    fn ordered(&self) -> Vec<(u32, u32)> {
        match &self.recent {
            None => vec![(self.first, self.min_delay)],
            Some(ring) => {
                let (newer, older) = ring.items.split_at(usize::from(ring.head));
                older.iter().chain(newer).copied().collect()
            }
        }
    }
}

pub(crate) struct Detector {
    window: u32,
    lowest_confidence: f64,
    /// The transitions of the last window: (time, id).
    recent: VecDeque<(u32, u32)>,
    /// Dense ids of the (entity, state) keys seen, in order of appearance.
    ids: KeyMap<Key, u32>,
    keys: Vec<Key>,
    /// Transitions per key id (the occurrences of A).
    triggers: Vec<u32>,
    /// Every transition's time per (entity, state), for the control moments of A.
    times: KeyMap<Key, Vec<u32>>,
    /// Sorted by [`pair_key`]; counted up to the last [`Detector::merge`].
    pairs: Vec<(u64, Pair)>,
    /// What follows what since the last merge, in time order.
    pending: Vec<Seen>,
    /// The radix sort's second buffer.
    scratch: Vec<Seen>,
    /// The previous merge's table (its allocation is reused).
    spare: Vec<(u64, Pair)>,
    stored: usize,
    pruned: u64,
    /// Per key id, the B transition that last counted it as an A (one A per B transition).
    seen: Vec<u32>,
    /// B transitions so far (the stamp of `seen`).
    habits: u32,
}

/// B reached its state at `t`, `delay` seconds after the most recent A in the window (`pair`:
/// [`pair_key`] of their ids); `base`: occurrences of A before that one (for a pair it creates).
#[derive(Debug, Clone, Copy)]
struct Seen {
    pair: u64,
    t: u32,
    delay: u32,
    base: u32,
}

/// The key of the pair (A, B) of key ids: sorts by A, then B.
fn pair_key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// Bits of a radix sort's digit.
const DIGIT_BITS: u32 = 11;

/// Sorts `items` by their pair (stable: each pair's in the order they came), A's id in the
/// high half and B's in the low, both below `2^id_bits`. Hand-written: the ids are dense, so
/// a least-significant-digit radix sort takes two to four passes over the batch (a comparison
/// sort of a batch took a third of a month's analysis), and no radix sort is among the
/// dependencies.
fn radix_sort_by_pair(items: &mut Vec<Seen>, scratch: &mut Vec<Seen>, id_bits: u32) {
    let id_bits = id_bits.clamp(1, 32);
    let digits_per_half = id_bits.div_ceil(DIGIT_BITS);
    let buckets = 1usize << DIGIT_BITS;
    let mask = (1u64 << DIGIT_BITS) - 1;
    let mut counts = vec![0usize; buckets];
    for half in [0u32, 32] {
        for digit in 0..digits_per_half {
            let shift = half + digit * DIGIT_BITS;
            let bucket = |s: &Seen| ((s.pair >> shift) & mask) as usize;
            counts.iter_mut().for_each(|c| *c = 0);
            for s in items.iter() {
                counts[bucket(s)] += 1;
            }
            let mut start = 0;
            for c in counts.iter_mut() {
                let n = *c;
                *c = start;
                start += n;
            }
            scratch.clear();
            scratch.resize(
                items.len(),
                Seen {
                    pair: 0,
                    t: 0,
                    delay: 0,
                    base: 0,
                },
            );
            for s in items.iter() {
                let b = bucket(s);
                scratch[counts[b]] = *s;
                counts[b] += 1;
            }
            std::mem::swap(items, scratch);
        }
    }
}

/// The key ids of a pair.
fn pair_ids(pair: u64) -> (usize, usize) {
    ((pair >> 32) as usize, (pair & 0xffff_ffff) as usize)
}

/// Co-occurrences collected before they are counted into the pairs in one sorted merge: most
/// are new pairs that a prune drops again, and a hash table's insert and remove of each (a
/// cache miss or two in a table of megabytes, a hundred million times in a month of a large
/// home) cost ten times more than sorting them.
const MERGE_BATCH: usize = 1 << 18;

impl Detector {
    pub(crate) fn new(params: &Params) -> Self {
        Detector {
            window: params.co_occurrence_window_seconds,
            lowest_confidence: params.thresholds.lowest_confidence(),
            recent: VecDeque::new(),
            ids: KeyMap::default(),
            keys: Vec::new(),
            triggers: Vec::new(),
            times: KeyMap::default(),
            pairs: Vec::new(),
            pending: Vec::new(),
            scratch: Vec::new(),
            spare: Vec::new(),
            stored: 0,
            pruned: 0,
            seen: Vec::new(),
            habits: 0,
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
        let id = self.id(k);
        if habit {
            self.habits = self.habits.wrapping_add(1);
            for &(ta, a) in self.recent.iter().rev() {
                let Some(seen) = self.seen.get_mut(a as usize) else {
                    continue;
                };
                let ka = self.keys.get(a as usize).copied().unwrap_or(k);
                if key_entity(ka) == key_entity(k) || *seen == self.habits || ta > t {
                    continue;
                }
                *seen = self.habits;
                let occurred = self.triggers.get(a as usize).copied().unwrap_or(1);
                self.pending.push(Seen {
                    pair: pair_key(a, id),
                    t,
                    delay: t - ta,
                    base: occurred.saturating_sub(1),
                });
            }
        }
        if let Some(n) = self.triggers.get_mut(id as usize) {
            *n += 1;
        }
        self.times.entry(k).or_default().push(t);
        self.recent.push_back((t, id));
        if self.pending.len() >= MERGE_BATCH {
            self.merge();
        }
    }

    /// The dense id of `k`, given on first sight.
    fn id(&mut self, k: Key) -> u32 {
        let next = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        let id = *self.ids.entry(k).or_insert(next);
        if id == next {
            self.keys.push(k);
            self.triggers.push(0);
            // a stamp no B transition has yet
            self.seen.push(self.habits);
        }
        id
    }

    /// Transitions of `k` (occurrences of it as A).
    fn occurrences_of(&self, k: Key) -> u32 {
        self.ids
            .get(&k)
            .and_then(|&id| self.triggers.get(id as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Counts the pending co-occurrences into the pairs (each pair's in time order, as they
    /// came), then prunes when over the caps.
    pub(crate) fn merge(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        // by pair, each pair's in time order (they came in time order)
        let id_bits = u32::BITS
            - u32::try_from(self.keys.len())
                .unwrap_or(u32::MAX)
                .leading_zeros();
        radix_sort_by_pair(&mut pending, &mut self.scratch, id_bits);
        let mut out = std::mem::take(&mut self.spare);
        out.clear();
        out.reserve(self.pairs.len() + pending.len());
        // drained, not consumed: the old table keeps its allocation for the next merge (a fresh
        // table of up to 362,144 pairs each batch was page faults, zeroing and unmapping: 15 % of
        // a month's analysis)
        let mut old_table = std::mem::take(&mut self.pairs);
        let mut old = old_table.drain(..).peekable();
        let mut stored = self.stored;
        let mut i = 0;
        while let Some(first) = pending.get(i) {
            let key = first.pair;
            while let Some(entry) = old.next_if(|(k, _)| *k < key) {
                out.push(entry);
            }
            let mut pair = match old.next_if(|(k, _)| *k == key) {
                Some((_, p)) => p,
                None => Pair::new(first),
            };
            while let Some(s) = pending.get(i).filter(|s| s.pair == key) {
                stored += pair.count(s);
                i += 1;
            }
            out.push((key, pair));
        }
        out.extend(old);
        self.stored = stored;
        self.pairs = out;
        self.spare = old_table;
        pending.clear();
        self.pending = pending;
        if self.pairs.len() > PAIR_CAP || self.stored > STORED_DELAYS_CAP {
            self.prune();
        }
    }

    fn prune(&mut self) {
        let before = self.pairs.len();
        let triggers = &self.triggers;
        // the confidence of a pair over the occurrences of A since it was created, and those
        let confidence = |pair: u64, p: &Pair| {
            let n = triggers
                .get(pair_ids(pair).0)
                .copied()
                .unwrap_or(0)
                .saturating_sub(p.trigger_base)
                .max(1);
            (f64::from(p.support) / f64::from(n), n)
        };
        let floor = self.lowest_confidence * HOPELESS_FRACTION;
        // first, in place: the hopeless, and the pairs seen once whose A has since occurred
        // often without B (most pairs: anything within the window of something else, once)
        let mut stored = self.stored;
        self.pairs.retain(|(pair, p)| {
            let (c, n) = confidence(*pair, p);
            let drop = (n >= HOPELESS_MIN_TRIGGERS && c < floor)
                || (p.support == 1 && n > STALE_SEED_TRIGGERS);
            if drop {
                stored -= p.kept();
            }
            !drop
        });
        self.stored = stored;
        let (keep_pairs, keep_stored) = (PAIR_CAP / 2, STORED_DELAYS_CAP / 2);
        if self.pairs.len() > keep_pairs || self.stored > keep_stored {
            // then the least confident (ties: the first in key order goes first)
            let mut ranked: Vec<(f64, usize)> = self
                .pairs
                .iter()
                .enumerate()
                .map(|(i, (pair, p))| (confidence(*pair, p).0, i))
                .collect();
            let order =
                |x: &(f64, usize), y: &(f64, usize)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
            let kept_of = |r: &(f64, usize)| self.pairs.get(r.1).map_or(0, |(_, p)| p.kept());
            let mut cut = ranked.len().saturating_sub(keep_pairs);
            if cut > 0 {
                ranked.select_nth_unstable_by(cut - 1, order);
            }
            let mut stored = self.stored - ranked[..cut].iter().map(kept_of).sum::<usize>();
            if stored > keep_stored {
                // the delays decide: rank them all
                ranked.sort_by(order);
                stored = self.stored - ranked[..cut].iter().map(kept_of).sum::<usize>();
                while stored > keep_stored && cut < ranked.len() {
                    stored -= kept_of(&ranked[cut]);
                    cut += 1;
                }
            }
            let mut dropped = vec![false; self.pairs.len()];
            for r in &ranked[..cut] {
                dropped[r.1] = true;
            }
            let mut i = 0;
            self.pairs.retain(|_| {
                i += 1;
                !dropped[i - 1]
            });
            self.stored = stored;
        }
        self.pruned += (before - self.pairs.len()) as u64;
    }

    pub(crate) fn pruned(&self) -> u64 {
        self.pruned
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.recent.capacity() * 8
            + self.ids.capacity() * 16
            + (self.keys.capacity() * 8 + self.triggers.capacity() * 4 + self.seen.capacity() * 4)
            + self
                .times
                .values()
                .map(|v| v.capacity() * 4 + 48)
                .sum::<usize>()
            + self
                .pairs
                .iter()
                .map(|(_, p)| p.recent.as_ref().map_or(0, |r| r.items.capacity() * 8 + 32))
                .sum::<usize>()
            + (self.pairs.capacity() + self.spare.capacity()) * std::mem::size_of::<(u64, Pair)>()
            + self.pending.capacity() * std::mem::size_of::<Seen>()
    }

    /// The co-occurrence patterns; `habits` holds every B's occurrences (for its base rate).
    pub(crate) fn finish(&self, ctx: &Context<'_>, habits: &time_of_day::Detector) -> Vec<Pattern> {
        let duration = (ctx.end - ctx.data_start).max(1) as f64;
        let mut base_rates: HashMap<Key, f64> = HashMap::new();
        let mut out = Vec::new();
        for &(ids, ref pair) in &self.pairs {
            let (a, b) = pair_ids(ids);
            let (Some(&a), Some(&b)) = (self.keys.get(a), self.keys.get(b)) else {
                continue;
            };
            let limits = ctx.limits(b);
            let triggers = self.occurrences_of(a).max(1);
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
    fn the_radix_sort_orders_by_pair_and_keeps_each_pairs_order() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (n, ids) in [
            (0usize, 1u32),
            (1, 1),
            (5_000, 3),
            (20_000, 3_000),
            (20_000, 70_000),
        ] {
            let mut items: Vec<Seen> = (0..n)
                .map(|i| Seen {
                    pair: pair_key(rng.random_range(0..ids), rng.random_range(0..ids)),
                    t: u32::try_from(i).unwrap_or(u32::MAX),
                    delay: 0,
                    base: 0,
                })
                .collect();
            let mut expected = items.clone();
            expected.sort_by_key(|s| s.pair); // stable
            let bits = u32::BITS - ids.leading_zeros();
            radix_sort_by_pair(&mut items, &mut Vec::new(), bits);
            let order = |v: &[Seen]| v.iter().map(|s| (s.pair, s.t)).collect::<Vec<_>>();
            assert_eq!(order(&items), order(&expected), "{n} items, {ids} ids");
        }
    }

    #[test]
    fn quantiles_interpolate() {
        assert!((quantile(&[10, 20, 30, 40, 50], 0.5) - 30.0).abs() < 1e-9);
        assert!((quantile(&[10, 20, 30, 40], 0.5) - 25.0).abs() < 1e-9);
        assert!((quantile(&[10, 20, 30, 40, 50], 0.25) - 20.0).abs() < 1e-9);
        assert!((quantile(&[7], 0.75) - 7.0).abs() < 1e-9);
    }
}
