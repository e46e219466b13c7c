//! Patterns: the home's routines learned from its own history.
//!
//! Pure and streaming: an [`Analyzer`] takes the state changes of the analysed window one at a
//! time, in time order ([`Analyzer::push`]), and [`Analyzer::finish`] returns the [`Pattern`]s.
//! No I/O; the analysis runner reads history through the storage interface and feeds it here.
//!
//! **Transitions.** Per entity the last state is kept; a transition is a change of the state
//! string to a discrete state (attribute-only updates repeat the state and are ignored), never
//! from or to `unavailable`/`unknown`/empty, and the first state seen of an entity is none
//! (see [`domains`] for which domains and states count). Changes before the window's start only
//! set the last state.
//!
//! **Who acted.** A transition caused by an automation or a system user
//! ([`OriginKind::is_automated`]) is never an occurrence of a habit (a time-of-day target or the
//! entity that follows in a co-occurrence); it still updates the last state and may be the
//! trigger of a co-occurrence (a door opened by anything can precede a light turned on by hand).
//!
//! **Local time.** Times of day, day types (weekday: Monday to Friday) and "one occurrence per
//! day" use the wall clock and dates of the home's time zone, so a 07:00 habit stays 07:00 across
//! daylight-saving changes.
//!
//! The two detectors, their constants and their decisions are described in [`time_of_day`] and
//! [`co_occurrence`].
//!
//! **Use** (the analysis runner):
//!
//! ```ignore
//! let params = Params::new(&settings.analysis, home_time_zone, now);
//! let mut analysis = Analyzer::new(params);
//! for (entity_id, class) in device_classes { analysis.set_device_class(entity_id, class) }
//! // every change from a little before `params.start` (the last state of each entity before the
//! // window makes its first change in the window a transition) to `params.end`, in time order
//! for row in history { analysis.push(Change { entity_id, state, time, origin }) }
//! let (patterns, stats) = analysis.finish(); // `memory_bytes()` and `stats()` before, for a run row
//! ```
//!
//! Memory: 4 bytes per habit transition, 4 bytes per transition (the control moments of
//! [`co_occurrence`]), one window of recent transitions, and the bounded pair table of
//! [`co_occurrence`]: a 30-day month of a 2,000-entity home (2 million changes) holds
//! about 18 MB ([`Analyzer::memory_bytes`]) in the test
//! `a_large_home_month_streams_in_bounded_memory`, whose process (glibc's allocator, 3.6 million
//! short-lived pairs) grew by about 40 MB resident at its peak.

mod co_occurrence;
pub(crate) mod domains;
mod thresholds;
mod time_of_day;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::AnalysisSettings;
use crate::store::origin::OriginKind;
use domains::{Role, StateClass};

pub(crate) use thresholds::{Limits, Thresholds};

/// Evidence kept per pattern: the most recent occurrences.
pub(crate) const EVIDENCE_CAP: usize = 100;

const DAY: i64 = 86_400;

/// The kind of pattern.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// An entity reaches a state around the same local time.
    TimeOfDay,
    /// One entity reaches a state shortly after another reaches one.
    CoOccurrence,
}

impl PatternKind {
    /// The serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            PatternKind::TimeOfDay => "time_of_day",
            PatternKind::CoOccurrence => "co_occurrence",
        }
    }
}

/// The days a pattern holds on (local dates).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DayType {
    /// Every day.
    All,
    /// Monday to Friday.
    Weekday,
    /// Saturday and Sunday.
    Weekend,
}

impl DayType {
    /// Every day type.
    pub const ALL: [DayType; 3] = [DayType::All, DayType::Weekday, DayType::Weekend];

    /// The serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            DayType::All => "all",
            DayType::Weekday => "weekday",
            DayType::Weekend => "weekend",
        }
    }

    /// Whether a day that is (`weekend`) or is not a weekend day is of this type.
    pub fn includes(self, weekend: bool) -> bool {
        match self {
            DayType::All => true,
            DayType::Weekday => !weekend,
            DayType::Weekend => weekend,
        }
    }
}

/// An entity of a pattern and the state it reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PatternEntity {
    /// The entity id.
    pub entity_id: String,
    /// The state it reaches (`on`, `locked`; `activated` for a scene).
    pub state: String,
}

/// The local time window of a time-of-day pattern (the home's wall clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimeWindow {
    /// Earliest occurrence, `HH:MM` (may be before midnight while `end` is after it).
    pub start: String,
    /// Latest occurrence, `HH:MM`.
    pub end: String,
    /// Circular mean of the occurrences, `HH:MM`.
    pub centre: String,
    /// Circular standard deviation of the occurrences, minutes.
    pub spread_minutes: f64,
}

/// The delay of a co-occurrence: how long after the first entity the second follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delay {
    /// Median delay, seconds.
    pub median_seconds: u32,
    /// Shortest delay seen, seconds.
    pub min_seconds: u32,
    /// Longest delay seen, seconds.
    pub max_seconds: u32,
    /// Interquartile range of the delays, seconds (their spread).
    pub iqr_seconds: u32,
}

/// One occurrence a pattern was learned from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Occurrence {
    /// When the (last) entity reached its state, UTC.
    pub time: DateTime<Utc>,
    /// Its local date.
    pub local_date: NaiveDate,
    /// Its local time, `HH:MM:SS`.
    pub local_time: String,
    /// Co-occurrence: seconds after the first entity reached its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<u32>,
}

/// A learned routine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pattern {
    /// Stable id: from the kind, the entities, their states and the day type (not the time, so a
    /// habit that drifts keeps its id); 16 hex digits.
    pub id: String,
    /// The kind of pattern.
    pub kind: PatternKind,
    /// The entities and the states they reach: one for `time_of_day`; for `co_occurrence` the
    /// one that comes first, then the one that follows.
    pub entities: Vec<PatternEntity>,
    /// The days it holds on (`all` for co-occurrences).
    pub day_type: DayType,
    /// `time_of_day`: the local time window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindow>,
    /// `co_occurrence`: the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// `time_of_day`: days with an occurrence in the window; `co_occurrence`: the support
    /// (occurrences of the first entity followed by the second).
    pub occurrences: u32,
    /// `time_of_day`: days of the day type the window covers (with history) at the pattern's
    /// time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_days: Option<u32>,
    /// `co_occurrence`: how often the first entity reached its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_occurrences: Option<u32>,
    /// 0..1. `time_of_day`: share of eligible days with an occurrence, above what chance gives,
    /// with a penalty for spread; `co_occurrence`: support / trigger occurrences.
    pub confidence: f64,
    /// `time_of_day`: the share of eligible days an entity with this many changes a day would
    /// have in the window by chance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chance: Option<f64>,
    /// `co_occurrence`: confidence / how often the second entity follows a random moment within
    /// the same delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lift: Option<f64>,
    /// The first occurrence in the window.
    pub first_seen: DateTime<Utc>,
    /// The last occurrence in the window.
    pub last_seen: DateTime<Utc>,
    /// The occurrences (one per local day for `time_of_day`), the most recent
    /// [`EVIDENCE_CAP`], oldest first.
    pub evidence: Vec<Occurrence>,
    /// Who made the target's changes to its state in the window (the last entity's; changes by
    /// automations are never counted): how much manual work an automation of it would save.
    #[serde(default)]
    pub actors: Actors,
}

/// Who made an entity's changes to one state, as HomeIQ attributed them live (see
/// [`OriginKind`]); automations and system users are left out (they are never habits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actors {
    /// By a person: a user context, or a script a person started.
    pub person: u32,
    /// Reported by the device or its integration: a wall switch, or the device's own schedule.
    pub device: u32,
    /// Not known (history read back from Home Assistant carries no context).
    pub unknown: u32,
}

impl Actors {
    /// Counts one change made by `origin` (automated origins are not counted).
    pub(crate) fn count(&mut self, origin: OriginKind) {
        let slot = match origin {
            OriginKind::User | OriginKind::Script => &mut self.person,
            OriginKind::Device => &mut self.device,
            OriginKind::Unknown => &mut self.unknown,
            OriginKind::Automation | OriginKind::System | OriginKind::Heartbeat => return,
        };
        *slot = slot.saturating_add(1);
    }

    /// The share of the changes that were manual work, 0..1: a person's count fully, a
    /// device-reported or unattributed one half (it may be a wall switch, or the device's own
    /// doing); 0.5 when nothing was counted.
    pub(crate) fn manual_share(&self) -> f64 {
        let total = f64::from(self.person) + f64::from(self.device) + f64::from(self.unknown);
        if total == 0.0 {
            return 0.5;
        }
        (f64::from(self.person) + 0.5 * (f64::from(self.device) + f64::from(self.unknown))) / total
    }
}

/// One state change as the analysis reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change<'a> {
    /// The entity id (`light.kitchen`).
    pub entity_id: &'a str,
    /// The new state string.
    pub state: &'a str,
    /// When it changed (`last_updated`), UTC.
    pub time: DateTime<Utc>,
    /// Who caused it.
    pub origin: OriginKind,
}

/// What one analysis needs besides the changes.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// Thresholds per domain.
    pub thresholds: Thresholds,
    /// `analysis.window_days`: the days the occurrence minimums apply to.
    pub window_days: u32,
    /// `analysis.co_occurrence_window_seconds`.
    pub co_occurrence_window_seconds: u32,
    /// The home's time zone.
    pub time_zone: Tz,
    /// The analysed window's start (changes before it only set the last state).
    pub start: DateTime<Utc>,
    /// The analysed window's end (changes at or after it are ignored).
    pub end: DateTime<Utc>,
}

impl Params {
    /// From the `analysis` settings: the `window_days` ending at `end`.
    pub(crate) fn new(settings: &AnalysisSettings, time_zone: Tz, end: DateTime<Utc>) -> Self {
        Params {
            thresholds: Thresholds::from_settings(settings),
            window_days: settings.window_days,
            co_occurrence_window_seconds: settings.co_occurrence_window_seconds,
            time_zone,
            start: end - chrono::Duration::days(i64::from(settings.window_days)),
            end,
        }
    }
}

/// Counts of what one analysis read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct AnalysisStats {
    /// Changes pushed.
    pub changes: u64,
    /// Transitions derived (of entities that can be in a pattern).
    pub transitions: u64,
    /// Transitions caused by automations or system users (never habits).
    pub automated: u64,
    /// Changes older than the one before them (the input must be in time order; still used).
    pub out_of_order: u64,
    /// Co-occurrence pairs dropped to bound memory (see [`co_occurrence`]).
    pub pairs_pruned: u64,
    /// Patterns found.
    pub patterns: u64,
}

/// Per entity: what it can be and its last state.
struct EntityInfo {
    role: Role,
    domain_end: usize,
    last_state: Option<u32>,
    device_class: Option<Box<str>>,
}

/// Strings to dense numbers.
#[derive(Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }

    fn bytes(&self) -> usize {
        self.names.iter().map(|s| 2 * s.len() + 48).sum::<usize>()
    }
}

/// An (entity, state) pair as one number: entity in the high half.
pub(crate) type Key = u64;

/// Hashes the dense numbers the analysis keys its tables by (its own [`Key`]s, never outside
/// input): a multiply per number and the splitmix64 finaliser, several times faster than std's
/// SipHash on the hot path.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by [`Key`]s.
pub(crate) type KeyMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<KeyHasher>>;

fn key(entity: u32, state: u32) -> Key {
    (u64::from(entity) << 32) | u64::from(state)
}

fn key_entity(k: Key) -> u32 {
    (k >> 32) as u32
}

fn key_state(k: Key) -> u32 {
    (k & 0xffff_ffff) as u32
}

/// The names and local clock the detectors need when they report.
pub(crate) struct Context<'a> {
    params: &'a Params,
    entities: &'a Interner,
    states: &'a Interner,
    info: &'a [EntityInfo],
    /// Unix seconds of `params.start`: stored times are seconds after it.
    base: i64,
    /// The first change in the window (history may begin after the window's start).
    data_start: i64,
    /// Unix seconds of `params.end`.
    end: i64,
}

impl Context<'_> {
    fn entity(&self, k: Key) -> &str {
        self.entities.name(key_entity(k))
    }

    fn state(&self, k: Key) -> &str {
        self.states.name(key_state(k))
    }

    fn limits(&self, k: Key) -> Limits {
        let entity = self.entity(k);
        let info = self.info.get(key_entity(k) as usize);
        let domain = info.map_or("", |i| &entity[..i.domain_end]);
        let class = info.and_then(|i| i.device_class.as_deref());
        self.params.thresholds.lookup(domain, class)
    }

    fn utc(&self, offset: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(self.base + i64::from(offset), 0).unwrap_or_default()
    }

    fn local(&self, offset: u32) -> Local {
        Local::of(self.params.time_zone, self.base + i64::from(offset))
    }

    fn occurrence(&self, offset: u32, delay_seconds: Option<u32>) -> Occurrence {
        let l = self.local(offset);
        Occurrence {
            time: self.utc(offset),
            local_date: l.date,
            local_time: hms(l.second),
            delay_seconds,
        }
    }
}

/// A moment on the home's wall clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    /// The local date.
    date: NaiveDate,
    /// Days since 1970-01-01 of the local date.
    day: i64,
    /// Seconds since local midnight (wall clock; 0..86_400).
    second: u32,
    /// Saturday or Sunday.
    weekend: bool,
}

impl Local {
    fn of(tz: Tz, unix: i64) -> Local {
        let offset = DateTime::from_timestamp(unix, 0).map_or(0, |t| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        });
        let wall = unix + i64::from(offset);
        let day = wall.div_euclid(DAY);
        let second = u32::try_from(wall.rem_euclid(DAY)).unwrap_or(0);
        let date =
            NaiveDate::from_num_days_from_ce_opt(i32::try_from(day + 719_163).unwrap_or(719_163))
                .unwrap_or_default();
        use chrono::Datelike;
        let weekend = matches!(date.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
        Local {
            date,
            day,
            second,
            weekend,
        }
    }
}

/// The UTC instant of local `date` at `second` after midnight: the earlier one when the wall
/// clock shows it twice (autumn), the first one after the gap when it skips it (spring).
fn instant(tz: Tz, date: NaiveDate, second: u32) -> Option<i64> {
    let naive = date.and_hms_opt(0, 0, 0)? + chrono::Duration::seconds(i64::from(second));
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.timestamp())
}

/// `HH:MM` of seconds after midnight.
fn hm(second: u32) -> String {
    let s = second % 86_400;
    format!("{:02}:{:02}", s / 3_600, s / 60 % 60)
}

/// `HH:MM:SS` of seconds after midnight.
fn hms(second: u32) -> String {
    let s = second % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3_600, s / 60 % 60, s % 60)
}

/// The stable id of a pattern: SHA-256 over its identity, 16 hex digits.
fn pattern_id(
    kind: PatternKind,
    entities: &[PatternEntity],
    day_type: DayType,
    rank: usize,
) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(kind.as_str().as_bytes());
    for e in entities {
        ctx.update(b"\0");
        ctx.update(e.entity_id.as_bytes());
        ctx.update(b"\0");
        ctx.update(e.state.as_bytes());
    }
    ctx.update(b"\0");
    ctx.update(day_type.as_str().as_bytes());
    if rank > 0 {
        // a second habit of the same entity, state and day type (morning and evening)
        ctx.update(format!("\0#{rank}").as_bytes());
    }
    ctx.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The streaming analysis: push changes in time order, then [`Analyzer::finish`].
pub(crate) struct Analyzer {
    params: Params,
    base: i64,
    end: i64,
    entities: Interner,
    states: Interner,
    info: Vec<EntityInfo>,
    first_in_window: Option<i64>,
    previous_time: i64,
    time_of_day: time_of_day::Detector,
    co_occurrence: co_occurrence::Detector,
    stats: AnalysisStats,
}

impl Analyzer {
    /// An analysis of the window in `params`.
    pub(crate) fn new(params: Params) -> Self {
        let co_occurrence = co_occurrence::Detector::new(&params);
        Analyzer {
            base: params.start.timestamp(),
            end: params.end.timestamp(),
            params,
            entities: Interner::default(),
            states: Interner::default(),
            info: Vec::new(),
            first_in_window: None,
            previous_time: i64::MIN,
            time_of_day: time_of_day::Detector::default(),
            co_occurrence,
            stats: AnalysisStats::default(),
        }
    }

    /// Tells the entity's device class (from its state's attributes or the entity registry):
    /// a cover of class `garage` or `door` is security-relevant.
    pub(crate) fn set_device_class(&mut self, entity_id: &str, device_class: &str) {
        let e = self.entity(entity_id);
        if let Some(info) = self.info.get_mut(e as usize) {
            info.device_class = Some(device_class.into());
        }
    }

    fn entity(&mut self, entity_id: &str) -> u32 {
        if let Some(e) = self.entities.get(entity_id) {
            return e;
        }
        let e = self.entities.intern(entity_id);
        let domain_end = entity_id.find('.').unwrap_or(0);
        self.info.push(EntityInfo {
            role: Role::of(&entity_id[..domain_end]),
            domain_end,
            last_state: None,
            device_class: None,
        });
        e
    }

    /// Takes the next change (in time order).
    pub(crate) fn push(&mut self, change: Change<'_>) {
        self.stats.changes += 1;
        let t = change.time.timestamp();
        if t < self.previous_time {
            self.stats.out_of_order += 1;
        }
        self.previous_time = self.previous_time.max(t);
        if t >= self.end {
            return;
        }
        let in_window = t >= self.base;
        if in_window && self.first_in_window.is_none() {
            self.first_in_window = Some(t);
        }
        let e = self.entity(change.entity_id);
        let Some(info) = self.info.get(e as usize) else {
            return;
        };
        if info.role == Role::Ignored {
            return;
        }
        let class = domains::classify(change.state);
        if class == StateClass::Skipped {
            return;
        }
        let state = self.states.intern(change.state);
        let previous = info.last_state;
        let role = info.role;
        let scene = &change.entity_id[..info.domain_end] == "scene";
        if let Some(info) = self.info.get_mut(e as usize) {
            info.last_state = Some(state);
        }
        let Some(previous) = previous else {
            return; // the first state seen
        };
        if previous == state
            || class == StateClass::Absent
            || domains::classify(self.states.name(previous)) == StateClass::Absent
            || !in_window
        {
            return;
        }
        self.stats.transitions += 1;
        let target_state = if scene {
            self.states.intern(domains::SCENE_ACTIVATED)
        } else {
            state
        };
        let k = key(e, target_state);
        let offset = u32::try_from(t - self.base).unwrap_or(u32::MAX);
        let automated = change.origin.is_automated();
        if automated {
            self.stats.automated += 1;
        }
        let habit = role == Role::Target && !automated;
        if habit {
            self.time_of_day.push(k, offset, change.origin);
        }
        self.co_occurrence.push(k, offset, habit);
    }

    /// What was read so far.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> &AnalysisStats {
        &self.stats
    }

    /// An estimate of the heap the analysis holds, bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.entities.bytes()
            + self.states.bytes()
            + self.info.capacity() * std::mem::size_of::<EntityInfo>()
            + self.time_of_day.memory_bytes()
            + self.co_occurrence.memory_bytes()
    }

    /// The patterns found, time-of-day ones first, each kind by entity; and what was read.
    pub(crate) fn finish(mut self) -> (Vec<Pattern>, AnalysisStats) {
        self.co_occurrence.merge();
        let ctx = Context {
            params: &self.params,
            entities: &self.entities,
            states: &self.states,
            info: &self.info,
            base: self.base,
            data_start: self.first_in_window.unwrap_or(self.end).max(self.base),
            end: self.end,
        };
        let mut patterns = self.time_of_day.finish(&ctx);
        patterns.extend(self.co_occurrence.finish(&ctx, &self.time_of_day));
        self.stats.pairs_pruned = self.co_occurrence.pruned();
        self.stats.patterns = patterns.len() as u64;
        (patterns, self.stats)
    }
}
