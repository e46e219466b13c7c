//! Daily life on the simulated clock, one simulated minute at a time.
//!
//! People wake, leave (weekdays, if they commute; sometimes at weekends), return and sleep at
//! times drawn per day from the seed; doors open when they come and go; the living room plays
//! media in the evening; thermostats follow occupancy; temperature, humidity, illuminance, power
//! and energy sensors report noisy values; batteries drain slowly. All of that is devices
//! reporting: contexts without user or parent.
//!
//! The routine also acts out the home's planted truth ([`super::truth`]): each area's motion
//! automations (motion when it is dark and someone is awake → lights on; no motion for 5 minutes
//! → lights off), run as Home Assistant runs a state-triggered automation; time-triggered
//! automations; people's habits and sequences in their user's context; the owner's script; the
//! Node-RED add-on's changes. Entities the plan uses are left alone by the rest of the routine.
//!
//! Every decision of a minute comes from a random generator seeded with the seed and the minute's
//! index, so a given simulated minute always behaves the same way for a seed.
//!
//! Sensors report as real ones do, each on its own schedule rather than on the minute: a period
//! around its kind's (the house meter every few seconds, plugs' power about every minute,
//! temperatures every few minutes), a phase, and a jitter on every report, all derived from the
//! seed and the sensor, so the home produces events all the time (at least one every few
//! seconds) and the same ones for a seed. Every change is stamped with the simulated time it was
//! due, also when the clock runs faster than the routine is driven.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::home::{Home, fxhash};
use super::hub::{Hub, Inner, Origin};
use super::truth::{Behaviour, Plan, is_weekend, mix, node_red_user, unit};

/// Minutes per day.
const DAY: i64 = 1_440;
/// A minute in µs.
const MINUTE_US: i64 = 60_000_000;

/// One person's day, in minutes after local midnight (the simulated home's time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Day {
    /// Wakes up.
    pub wake: i64,
    /// Leaves the house (`leave == back`: stays in).
    pub leave: i64,
    /// Comes back.
    pub back: i64,
    /// Goes to sleep.
    pub sleep: i64,
}

impl Day {
    /// Whether the person is at home at minute `m` of the day.
    pub(crate) fn home(&self, m: i64) -> bool {
        !(self.leave <= m && m < self.back)
    }

    /// Whether the person is awake at minute `m`.
    pub(crate) fn awake(&self, m: i64) -> bool {
        self.wake <= m && m < self.sleep
    }
}

/// The plan of person `person` on day `day` (days since the epoch).
pub(crate) fn plan_day(seed: u64, person: usize, commutes: bool, day: i64) -> Day {
    let mut rng = StdRng::seed_from_u64(
        seed ^ (day as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (person as u64) << 48,
    );
    let weekday = DateTime::<Utc>::from_timestamp(day * 86_400, 0)
        .map(|t| t.weekday())
        .unwrap_or(Weekday::Mon);
    let weekend = matches!(weekday, Weekday::Sat | Weekday::Sun);
    if weekend {
        let wake = 450 + rng.random_range(0..120);
        let (leave, back) = if rng.random_bool(0.4) {
            let l = 600 + rng.random_range(0..240);
            (l, l + 60 + rng.random_range(0..180))
        } else {
            (0, 0)
        };
        Day {
            wake,
            leave,
            back,
            sleep: 1_380 + rng.random_range(0..59),
        }
    } else {
        let wake = 360 + rng.random_range(0..90);
        let (leave, back) = if commutes {
            let l = wake + 45 + rng.random_range(0..30);
            (l, 990 + rng.random_range(0..150))
        } else {
            (0, 0)
        };
        Day {
            wake,
            leave,
            back,
            sleep: 1_320 + rng.random_range(0..90),
        }
    }
}

/// A sensor that reports on its own schedule, named by its place in the home's roles (so a
/// renamed entity keeps reporting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sensor {
    /// `roles[role].temperature[i]`.
    Temperature { role: usize, i: usize },
    /// `roles[role].humidity[i]`.
    Humidity { role: usize, i: usize },
    /// `roles[role].illuminance`.
    Illuminance { role: usize },
    /// `roles[role].climate` (a thermostat's current temperature and action).
    Climate { role: usize },
    /// The power sensor of `roles[role].plugs[k]`.
    PlugPower { role: usize, k: usize },
    /// The energy sensor of `roles[role].plugs[k]`.
    PlugEnergy { role: usize, k: usize },
    /// The house meter's power.
    MeterPower,
    /// The house meter's energy.
    MeterEnergy,
    /// `meter_phases[i]`.
    Phase(usize),
}

impl Sensor {
    /// The period its kind reports at, µs, and the share of it a report may move by (its
    /// jitter, at most a quarter, so reports stay in order).
    fn schedule(self) -> (i64, i64) {
        let (secs, jitter_div) = match self {
            // an energy meter reports every few seconds: the home's heartbeat
            Sensor::MeterPower => (3, 10),
            Sensor::Phase(_) => (10, 4),
            Sensor::PlugPower { .. } => (60, 4),
            Sensor::Temperature { .. }
            | Sensor::Illuminance { .. }
            | Sensor::Climate { .. }
            | Sensor::PlugEnergy { .. }
            | Sensor::MeterEnergy => (300, 4),
            Sensor::Humidity { .. } => (600, 4),
        };
        (secs * 1_000_000, jitter_div)
    }

    /// The entity it reports, if it still has one.
    fn entity(self, home: &Home) -> Option<&str> {
        let role = |r: usize| home.roles.get(r);
        match self {
            Sensor::Temperature { role: r, i } => role(r)?.temperature.get(i),
            Sensor::Humidity { role: r, i } => role(r)?.humidity.get(i),
            Sensor::Illuminance { role: r } => role(r)?.illuminance.as_ref(),
            Sensor::Climate { role: r } => role(r)?.climate.as_ref(),
            Sensor::PlugPower { role: r, k } => role(r)?.plugs.get(k).map(|(_, p, _)| p),
            Sensor::PlugEnergy { role: r, k } => role(r)?.plugs.get(k).map(|(_, _, e)| e),
            Sensor::MeterPower => home.meter.as_ref().map(|(p, _)| p),
            Sensor::MeterEnergy => home.meter.as_ref().map(|(_, e)| e),
            Sensor::Phase(i) => home.meter_phases.get(i),
        }
        .map(String::as_str)
    }
}

/// One sensor's schedule: report `n` is due at `phase + n × period ± jitter` (µs since the
/// epoch), so its times depend only on the seed and the sensor, never on when the routine ran.
#[derive(Debug, Clone, Copy)]
struct Reporter {
    sensor: Sensor,
    /// Mixed from the seed and the sensor's entity id.
    salt: u64,
    period: i64,
    phase: i64,
    jitter: i64,
    /// Index of the next report.
    next: i64,
}

impl Reporter {
    fn new(seed: u64, sensor: Sensor, entity_id: &str) -> Self {
        let salt = mix(seed ^ fxhash(entity_id));
        let (base, jitter_div) = sensor.schedule();
        // each sensor its own period, within ±20 % of its kind's
        let period = base / 100 * (80 + (salt % 41) as i64);
        Reporter {
            sensor,
            salt,
            period,
            phase: (mix(salt) % period as u64) as i64,
            jitter: period / jitter_div,
            next: 0,
        }
    }

    /// A number in [0, 1) for report `n`, `k`-th draw.
    fn unit(&self, n: i64, k: u64) -> f64 {
        let bits = mix(self.salt ^ mix(n as u64) ^ k.wrapping_mul(0xA24B_AED4_963E_E407));
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }

    /// When report `n` is due.
    fn at(&self, n: i64) -> i64 {
        let jitter = ((self.unit(n, 0) * 2.0 - 1.0) * self.jitter as f64) as i64;
        self.phase + n * self.period + jitter
    }

    /// The index of the first report due at `t` or later.
    fn first_from(&self, t: i64) -> i64 {
        let mut n = (t - self.phase).div_euclid(self.period) - 1;
        while self.at(n) < t {
            n += 1;
        }
        n
    }
}

/// Every sensor of the home that reports on its own schedule.
fn reporters(seed: u64, home: &Home) -> Vec<Reporter> {
    let mut sensors = Vec::new();
    for (role, r) in home.roles.iter().enumerate() {
        sensors.extend((0..r.temperature.len()).map(|i| Sensor::Temperature { role, i }));
        sensors.extend((0..r.humidity.len()).map(|i| Sensor::Humidity { role, i }));
        sensors.extend(r.illuminance.iter().map(|_| Sensor::Illuminance { role }));
        sensors.extend(r.climate.iter().map(|_| Sensor::Climate { role }));
        for k in 0..r.plugs.len() {
            sensors.push(Sensor::PlugPower { role, k });
            sensors.push(Sensor::PlugEnergy { role, k });
        }
    }
    if home.meter.is_some() {
        sensors.push(Sensor::MeterPower);
        sensors.push(Sensor::MeterEnergy);
    }
    sensors.extend((0..home.meter_phases.len()).map(Sensor::Phase));
    sensors
        .into_iter()
        .filter_map(|s| Some(Reporter::new(seed, s, s.entity(home)?)))
        .collect()
}

/// A person's action scheduled for a later time.
#[derive(Debug, Clone)]
struct Pending {
    entity_id: String,
    state: String,
    /// Done only if the entity is still in this state.
    only_from: Option<String>,
    user_id: String,
    /// The sequence whose target this is (it is put back later).
    sequence: Option<usize>,
}

/// Something planted that happens once a local day at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Timed {
    /// `plan.truth.automations[i]`.
    Automation(usize),
    /// `plan.truth.system_changes[i]`.
    System(usize),
    /// `plan.truth.scripts[i]`.
    Script(usize),
}

/// Routine state that lives between minutes.
#[derive(Debug, Default)]
pub(crate) struct Routine {
    seed: u64,
    /// Sensors keep their values (no scheduled reports).
    quiet_sensors: bool,
    motion_until: HashMap<String, i64>,
    /// Area role → minute its motion-off automation is due (motion off for 5 minutes).
    light_off_at: HashMap<usize, i64>,
    door_close_at: HashMap<String, i64>,
    /// The planted truth this routine acts out.
    plan: Arc<Plan>,
    /// Per habit, the local day it last came due on (an autumn hour repeats its minutes).
    habit_day: Vec<i64>,
    /// Per time-triggered automation, system change or script, the local day it last ran.
    timed_day: HashMap<Timed, i64>,
    /// Per sequence, the trigger's `last_changed` already looked at.
    trigger_seen: Vec<i64>,
    /// People's actions to come, by (time µs, order).
    pending: std::collections::BTreeMap<(i64, u64), Pending>,
    pending_order: u64,
    last_minute: Option<i64>,
    reporters: Vec<Reporter>,
    /// Due reports: (time, index into `reporters`), earliest first.
    due: BinaryHeap<Reverse<(i64, usize)>>,
    /// People at home and awake, as of the last minute.
    home_awake: usize,
    /// Lights on, as of the last minute.
    lights_on: usize,
}

/// Minute `minute` (since the epoch, UTC) on the wall clock of `tz`, as minutes since the local
/// epoch: its `div_euclid(DAY)` is the local day (the index [`plan_day`] takes), its
/// `rem_euclid(DAY)` the local minute of the day. Across a daylight-saving change local minutes
/// skip an hour (spring) or repeat one (autumn), as a wall clock does.
pub(crate) fn local_minute(tz: chrono_tz::Tz, minute: i64) -> i64 {
    use chrono::{Offset, TimeZone};
    let offset = DateTime::<Utc>::from_timestamp(minute.saturating_mul(60), 0)
        .map(|t| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        })
        .unwrap_or(0);
    minute + i64::from(offset) / 60
}

/// Daylight at minute `m` of the day, 0..1.
fn daylight(m: i64) -> f64 {
    let (rise, set) = (390.0, 1_140.0);
    let m = m as f64;
    if m < rise || m > set {
        0.0
    } else {
        ((m - rise) / (set - rise) * std::f64::consts::PI).sin()
    }
}

/// Sets an existing entity's state string, stamped `at`, as its device reports it (a context
/// without user or parent).
fn set(inner: &mut Inner, id: &str, state: &str, at: i64) {
    if inner.state(id).is_some_and(|s| s.state != state) {
        let _ = inner.set_state_at(Some(at), id, state, None, false, &Origin::default());
    }
}

/// Sets an existing entity's state string and some attributes, stamped `at`, as its device
/// reports it.
fn set_with(inner: &mut Inner, id: &str, state: &str, attrs: &[(&str, Value)], at: i64) {
    set_by(inner, id, state, attrs, at, &Origin::default());
}

/// Sets an existing entity's state string and some attributes, stamped `at`, in `origin`'s
/// context.
fn set_by(
    inner: &mut Inner,
    id: &str,
    state: &str,
    attrs: &[(&str, Value)],
    at: i64,
    origin: &Origin,
) {
    let Some(current) = inner.state(id) else {
        return;
    };
    let mut a = current.attributes.clone();
    for (k, v) in attrs {
        a.insert((*k).to_owned(), v.clone());
    }
    let _ = inner.set_state_at(Some(at), id, state, Some(a), false, origin);
}

/// The attributes that go with `state` of `entity_id` when a person or an automation sets it.
fn attrs_for(entity_id: &str, state: &str, brightness: u64) -> Vec<(&'static str, Value)> {
    match (entity_id.split('.').next(), state) {
        (Some("light"), "on") => vec![
            ("brightness", json!(brightness)),
            ("color_mode", json!("brightness")),
        ],
        (Some("light"), _) => vec![("brightness", Value::Null), ("color_mode", Value::Null)],
        (Some("media_player"), "playing") => vec![("media_title", json!("Morning Radio"))],
        (Some("media_player"), _) => vec![("media_title", Value::Null)],
        (Some("climate"), "off") => vec![("hvac_action", json!("off"))],
        (Some("climate"), _) => vec![("hvac_action", json!("idle"))],
        _ => Vec::new(),
    }
}

fn number(inner: &Inner, id: &str) -> Option<f64> {
    inner.state(id).and_then(|s| s.state.parse().ok())
}

impl Routine {
    /// A routine for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Routine {
            seed,
            ..Routine::default()
        }
    }

    /// With `quiet`, sensors keep their values instead of reporting on their schedules.
    pub(crate) fn quiet_sensors(mut self, quiet: bool) -> Self {
        self.quiet_sensors = quiet;
        self
    }

    /// Runs every simulated minute and every sensor report due from the last call up to
    /// `now_us`, in time order (at most `max` minutes of them; older ones are skipped). The
    /// first call starts with the current minute and the reports due from `now_us` on.
    pub(crate) fn advance(&mut self, inner: &mut Inner, now_us: i64, max: i64) {
        let now_min = now_us.div_euclid(MINUTE_US);
        let from = match self.last_minute {
            Some(last) => (last + 1).max(now_min - max + 1),
            None => now_min,
        };
        let reports_from = match self.last_minute {
            None => {
                self.reporters = if self.quiet_sensors {
                    Vec::new()
                } else {
                    reporters(self.seed, &inner.home)
                };
                self.plan = inner.plan.clone();
                self.habit_day = vec![i64::MIN; self.plan.truth.habits.len()];
                self.trigger_seen = self
                    .plan
                    .truth
                    .sequences
                    .iter()
                    .map(|s| {
                        inner
                            .state(&s.trigger.entity_id)
                            .map_or(0, |st| st.last_changed)
                    })
                    .collect();
                Some(now_us)
            }
            Some(last) if from > last + 1 => Some(from * MINUTE_US),
            Some(_) => None,
        };
        if let Some(t) = reports_from {
            self.due.clear();
            for (i, r) in self.reporters.iter_mut().enumerate() {
                r.next = r.first_from(t);
                self.due.push(Reverse((r.at(r.next), i)));
            }
        }
        let mut minute = from;
        loop {
            let report = self.due.peek().map(|Reverse(d)| *d);
            let pending = self.pending.keys().next().map(|k| k.0);
            let minute_at = (minute <= now_min).then_some(minute * MINUTE_US);
            let first = [
                minute_at,
                report.map(|r| r.0).filter(|t| *t <= now_us),
                pending.filter(|t| *t <= now_us),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(first) = first else {
                break;
            };
            if minute_at == Some(first) {
                self.minute(inner, minute);
                self.watch_triggers(inner);
                minute += 1;
            } else if pending == Some(first) {
                if let Some((_, p)) = self.pending.pop_first() {
                    self.act(inner, first, p);
                    self.watch_triggers(inner);
                }
            } else if let Some((t, i)) = report {
                self.due.pop();
                self.report(inner, i, t);
                let r = &mut self.reporters[i];
                r.next += 1;
                self.due.push(Reverse((r.at(r.next), i)));
            }
        }
        self.last_minute = Some(now_min);
    }

    /// The simulated minute the routine has run up to.
    pub(crate) fn last_minute(&self) -> Option<i64> {
        self.last_minute
    }

    /// Schedules a person's action at `at` (µs).
    fn schedule(&mut self, at: i64, p: Pending) {
        self.pending_order += 1;
        self.pending.insert((at, self.pending_order), p);
    }

    /// Schedules person `user_id` to bring `entity_id` back to `state` at `at`, if it is still
    /// `from` then.
    fn put_back(&mut self, at: i64, entity_id: &str, state: &str, from: &str, user_id: &str) {
        let back = Pending {
            entity_id: entity_id.to_owned(),
            state: state.to_owned(),
            only_from: Some(from.to_owned()),
            user_id: user_id.to_owned(),
            sequence: None,
        };
        self.schedule(at, back);
    }

    /// A person's scheduled action comes due at `at`.
    fn act(&mut self, inner: &mut Inner, at: i64, p: Pending) {
        let Some(current) = inner.state(&p.entity_id).map(|s| s.state.clone()) else {
            return;
        };
        if current == p.state || p.only_from.as_ref().is_some_and(|f| *f != current) {
            return;
        }
        let attrs = attrs_for(&p.entity_id, &p.state, 180);
        set_by(
            inner,
            &p.entity_id,
            &p.state,
            &attrs,
            at,
            &Origin::by(&p.user_id),
        );
        // a sequence's target goes back some minutes later
        let plan = self.plan.clone();
        if let Some(k) = p.sequence
            && let Some(s) = plan.truth.sequences.get(k)
        {
            let (lo, hi) = s.revert_minutes;
            let u = unit(self.seed, 0x5E9B, k as u64, at as u64);
            let later = at + (lo + ((hi - lo + 1) as f64 * u) as i64) * MINUTE_US;
            self.put_back(later, &p.entity_id, &s.rest, &p.state, &p.user_id);
        }
    }

    /// Whether a sequence's trigger reached its state since last looked at: then its target may
    /// follow.
    fn watch_triggers(&mut self, inner: &mut Inner) {
        let plan = self.plan.clone();
        for (k, s) in plan.truth.sequences.iter().enumerate() {
            let Some(st) = inner.state(&s.trigger.entity_id) else {
                continue;
            };
            let Some(seen) = self.trigger_seen.get_mut(k) else {
                continue;
            };
            if st.last_changed <= *seen {
                continue;
            }
            *seen = st.last_changed;
            if st.state != s.trigger.state {
                continue;
            }
            let t = st.last_changed;
            if unit(self.seed, 0x5E90, k as u64, t as u64) >= s.probability {
                continue;
            }
            let (lo, hi) = (s.delay_seconds.min as i64, s.delay_seconds.max as i64);
            let u = unit(self.seed, 0x5E91, k as u64, t as u64);
            let delay = lo * 1_000_000 + ((hi - lo) as f64 * 1e6 * u) as i64;
            let follow = Pending {
                entity_id: s.target.entity_id.clone(),
                state: s.target.state.clone(),
                only_from: Some(s.rest.clone()),
                user_id: s.user_id.clone(),
                sequence: Some(k),
            };
            self.schedule(t + delay, follow);
        }
    }

    /// People's habits, time-triggered automations and the add-on's changes due at local minute
    /// `local` (minutes since the local epoch), stamped `at`.
    fn planted(&mut self, inner: &mut Inner, local: i64, at: i64) {
        let plan = self.plan.clone();
        let day = local.div_euclid(DAY);
        for (i, h) in plan.truth.habits.iter().enumerate() {
            // an occurrence belongs to the day it is planned on (± jitter may cross midnight)
            for d in day - 1..=day + 1 {
                if !h.day_type.matches(d) || self.habit_day.get(i) == Some(&d) {
                    continue;
                }
                let j = i64::from(h.jitter_minutes);
                let u = unit(self.seed, 0x4AB1, i as u64, d as u64);
                let offset = ((2 * j + 1) as f64 * u) as i64 - j;
                if d * DAY + h.minute + offset != local {
                    continue;
                }
                if let Some(slot) = self.habit_day.get_mut(i) {
                    *slot = d;
                }
                let current = inner.state(&h.entity_id).map(|s| s.state.clone());
                if current.as_deref() != Some(h.from.as_str()) {
                    continue;
                }
                if unit(self.seed, 0x4AB2, i as u64, d as u64) < h.p_when_possible {
                    let attrs = attrs_for(&h.entity_id, &h.state, 200);
                    set_by(
                        inner,
                        &h.entity_id,
                        &h.state,
                        &attrs,
                        at,
                        &Origin::by(&h.user_id),
                    );
                } else if h.back {
                    // the second of a pair did not happen: the person puts it back later
                    let u = unit(self.seed, 0x4AB3, i as u64, d as u64);
                    let later = at + (120 + (210.0 * u) as i64) * MINUTE_US;
                    self.put_back(later, &h.entity_id, &h.state, &h.from, &h.user_id);
                }
            }
        }
        let m = local.rem_euclid(DAY);
        for (i, a) in plan.truth.automations.iter().enumerate() {
            let Behaviour::AtTime { minute } = a.behaviour else {
                continue;
            };
            if minute != m
                || !a.day_type.matches(day)
                || self.timed_day.get(&Timed::Automation(i)) == Some(&day)
                || !inner.automations.contains_key(&a.id)
            {
                continue;
            }
            self.timed_day.insert(Timed::Automation(i), day);
            // a time trigger: a run context with no parent and no user
            let origin = inner.start_run(Some(at), &a.entity_id, &json!(a.alias), "time", None);
            for t in &a.targets {
                let attrs = attrs_for(&t.entity_id, &t.state, 255);
                set_by(inner, &t.entity_id, &t.state, &attrs, at, &origin);
            }
        }
        for (i, sc) in plan.truth.scripts.iter().enumerate() {
            let (lo, hi) = sc.window;
            let u = unit(self.seed, 0x5C71, i as u64, day as u64);
            let when = lo + ((hi - lo) as f64 * u) as i64;
            if when != m
                || self.timed_day.get(&Timed::Script(i)) == Some(&day)
                || unit(self.seed, 0x5C72, i as u64, day as u64) >= sc.probability
            {
                continue;
            }
            self.timed_day.insert(Timed::Script(i), day);
            let origin = inner.start_script(Some(at), &sc.entity_id, &sc.alias, &sc.user_id);
            for t in &sc.targets {
                let attrs = attrs_for(&t.entity_id, &t.state, 120);
                set_by(inner, &t.entity_id, &t.state, &attrs, at, &origin);
                let u = unit(self.seed, 0x5C73, i as u64, day as u64);
                let later = at + (90 + (60.0 * u) as i64) * MINUTE_US;
                self.put_back(later, &t.entity_id, &sc.rest, &t.state, &sc.user_id);
            }
            inner.end_script(Some(at), &sc.entity_id, &origin);
        }
        let node_red = node_red_user(self.seed);
        for (i, c) in plan.truth.system_changes.iter().enumerate() {
            let u = unit(self.seed, 0x5757, i as u64, day as u64);
            let offset = (3.0 * u) as i64 - 1;
            if c.minute + offset != m
                || !c.day_type.matches(day)
                || self.timed_day.get(&Timed::System(i)) == Some(&day)
            {
                continue;
            }
            self.timed_day.insert(Timed::System(i), day);
            if inner
                .state(&c.entity_id)
                .is_some_and(|s| s.state != c.state)
            {
                let _ = inner.set_state_at(
                    Some(at),
                    &c.entity_id,
                    &c.state,
                    None,
                    false,
                    &Origin::by(&node_red),
                );
            }
        }
    }

    /// Runs area `ri`'s motion automation `idx` (triggered by `motion`'s current state): its
    /// lights go to `state`.
    fn run_motion(
        &self,
        inner: &mut Inner,
        idx: usize,
        motion: &str,
        state: &str,
        at: i64,
        b: u64,
    ) {
        let Some(a) = self.plan.truth.automations.get(idx) else {
            return;
        };
        if !inner.automations.contains_key(&a.id) {
            return;
        }
        let parent = inner.state(motion).map(|s| s.context_id.clone());
        let source = format!("state of {motion}");
        let origin = inner.start_run(Some(at), &a.entity_id, &json!(a.alias), &source, parent);
        for t in &a.targets {
            if inner.state(&t.entity_id).is_some_and(|s| s.state != state) {
                let attrs = attrs_for(&t.entity_id, state, b);
                set_by(inner, &t.entity_id, state, &attrs, at, &origin);
            }
        }
    }

    /// Sensor `i` reports (its report due at `at`).
    fn report(&mut self, inner: &mut Inner, i: usize, at: i64) {
        let r = self.reporters[i];
        let Some(id) = r.sensor.entity(&inner.home).map(str::to_owned) else {
            return;
        };
        let n = r.next;
        let noise = |k: u64, lo: f64, hi: f64| lo + r.unit(n, k) * (hi - lo);
        let m = local_minute(inner.time_zone, at.div_euclid(MINUTE_US)).rem_euclid(DAY);
        // energy over the report's period at `watts`, in kWh
        let kwh_over_period = |watts: f64| watts * r.period as f64 / 3.6e12;
        match r.sensor {
            Sensor::Temperature { .. } => {
                let cur = number(inner, &id).unwrap_or(20.0);
                let v = cur + (20.5 - cur) * 0.05 + noise(1, -0.15, 0.15);
                set(inner, &id, &format!("{v:.1}"), at);
            }
            Sensor::Humidity { .. } => {
                let cur = number(inner, &id).unwrap_or(45.0);
                let v = (cur + (46.0 - cur) * 0.05 + noise(1, -0.8, 0.8)).clamp(20.0, 95.0);
                set(inner, &id, &format!("{v:.1}"), at);
            }
            Sensor::Illuminance { role } => {
                let lights_on = inner.home.roles[role]
                    .lights
                    .iter()
                    .filter(|l| inner.state(l).is_some_and(|s| s.state == "on"))
                    .count() as f64;
                let v = daylight(m) * 450.0 + lights_on * 60.0 + noise(1, 0.0, 5.0);
                set(inner, &id, &format!("{}", v.round() as i64), at);
            }
            Sensor::Climate { .. } => {
                // a thermostat a person turned off stays off (its temperature still moves)
                if inner.state(&id).is_some_and(|s| s.state == "off") {
                    let current = inner
                        .state(&id)
                        .and_then(|s| s.attributes.get("current_temperature"))
                        .and_then(Value::as_f64)
                        .unwrap_or(20.0);
                    let next = current - 0.05 + noise(1, -0.1, 0.1);
                    set_with(
                        inner,
                        &id,
                        "off",
                        &[("current_temperature", json!((next * 10.0).round() / 10.0))],
                        at,
                    );
                    return;
                }
                let target = if self.home_awake > 0 { 21.0 } else { 18.0 };
                let current = inner
                    .state(&id)
                    .and_then(|s| s.attributes.get("current_temperature"))
                    .and_then(Value::as_f64)
                    .unwrap_or(20.0);
                let heating = current < target - 0.3;
                let next = current + if heating { 0.2 } else { -0.1 } + noise(1, -0.1, 0.1);
                set_with(
                    inner,
                    &id,
                    "heat",
                    &[
                        ("temperature", json!(target)),
                        ("current_temperature", json!((next * 10.0).round() / 10.0)),
                        (
                            "hvac_action",
                            json!(if heating { "heating" } else { "idle" }),
                        ),
                    ],
                    at,
                );
            }
            Sensor::PlugPower { role, k } => {
                let key = (role * 31 + k) as i64;
                let switch = &inner.home.roles[role].plugs[k].0;
                let watts = if inner.state(switch).is_some_and(|s| s.state == "on") {
                    60.0 + (key % 7) as f64 * 180.0 + noise(1, -15.0, 15.0)
                } else {
                    0.3 + noise(1, 0.0, 1.2)
                };
                set(inner, &id, &format!("{watts:.1}"), at);
            }
            Sensor::PlugEnergy { role, k } => {
                let power = &inner.home.roles[role].plugs[k].1;
                let watts = number(inner, power).unwrap_or(0.0);
                let kwh = number(inner, &id).unwrap_or(0.0) + kwh_over_period(watts);
                set(inner, &id, &format!("{kwh:.3}"), at);
            }
            Sensor::MeterPower => {
                let watts = 140.0
                    + self.lights_on as f64 * 8.0
                    + self.home_awake as f64 * 90.0
                    + noise(1, -20.0, 20.0);
                let mut value = format!("{watts:.1}");
                // a meter's readings differ from one report to the next: every report is an event
                if inner.state(&id).is_some_and(|s| s.state == value) {
                    value = format!("{:.1}", watts + 0.1);
                }
                set(inner, &id, &value, at);
            }
            Sensor::MeterEnergy => {
                let watts = inner
                    .home
                    .meter
                    .as_ref()
                    .and_then(|(p, _)| number(inner, p))
                    .unwrap_or(0.0);
                let kwh = number(inner, &id).unwrap_or(0.0) + kwh_over_period(watts);
                set(inner, &id, &format!("{kwh:.3}"), at);
            }
            Sensor::Phase(_) => {
                let house = inner
                    .home
                    .meter
                    .as_ref()
                    .and_then(|(p, _)| number(inner, p))
                    .unwrap_or(300.0);
                let v = (house / 3.0 + noise(1, -15.0, 15.0)).max(0.0);
                set(inner, &id, &format!("{v:.1}"), at);
            }
        }
    }

    /// One simulated minute (`minute` = minutes since the epoch).
    pub(crate) fn minute(&mut self, inner: &mut Inner, minute: i64) {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (minute as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let local = local_minute(inner.time_zone, minute);
        let (day, m) = (local.div_euclid(DAY), local.rem_euclid(DAY));
        let persons = inner.home.persons.clone();
        let roles = inner.home.roles.clone();
        let at = minute * MINUTE_US;

        // people
        let mut home_awake = 0usize;
        let mut home_any = 0usize;
        let mut asleep_rooms = Vec::new();
        for (i, p) in persons.iter().enumerate() {
            let plan = plan_day(self.seed, i, p.commutes, day);
            let home = plan.home(m);
            if home {
                home_any += 1;
                if plan.awake(m) {
                    home_awake += 1;
                } else {
                    asleep_rooms.push(p.bedroom);
                }
            }
            let state = if home { "home" } else { "not_home" };
            if inner.state(&p.entity_id).is_some_and(|s| s.state != state) {
                set(inner, &p.entity_id, state, at);
                // the front door opens as they come and go
                if let Some(door) = roles.iter().find_map(|r| r.door.clone()) {
                    set(inner, &door, "on", at);
                    self.door_close_at.insert(door, minute + 1);
                }
            }
        }
        let closing: Vec<String> = self
            .door_close_at
            .iter()
            .filter(|(_, at)| **at <= minute)
            .map(|(d, _)| d.clone())
            .collect();
        for door in closing {
            self.door_close_at.remove(&door);
            set(inner, &door, "off", at);
        }

        // people's habits, time-triggered automations, the add-on
        self.planted(inner, local, at);

        let dark = daylight(m) < 0.25;
        let plan = self.plan.clone();
        for (ri, role) in roles.iter().enumerate() {
            // motion; the area's motion automations switch its lights
            let automations = plan.motion_automations.get(ri).copied().flatten();
            if let Some(motion) = &role.motion {
                let mut p = if home_awake > 0 {
                    0.05 * home_awake as f64
                } else {
                    0.002
                };
                if role.living && (1_080..1_380).contains(&m) {
                    p *= 3.0;
                }
                if role.bedroom && asleep_rooms.contains(&ri) {
                    p = 0.003;
                }
                if rng.random_bool(p.min(0.9)) {
                    let was_on = inner.state(motion).is_some_and(|s| s.state == "on");
                    set(inner, motion, "on", at);
                    self.motion_until
                        .insert(motion.clone(), minute + rng.random_range(2..6));
                    self.light_off_at.remove(&ri);
                    // "motion → lights on" (its condition: dark, someone awake at home)
                    if !was_on
                        && dark
                        && home_awake > 0
                        && let Some((on, _)) = automations
                    {
                        let brightness = if !(360..1_320).contains(&m) { 60 } else { 200 };
                        self.run_motion(inner, on, motion, "on", at, brightness);
                    }
                } else if self.motion_until.get(motion).is_some_and(|u| *u <= minute) {
                    self.motion_until.remove(motion);
                    set(inner, motion, "off", at);
                    // "no motion for 5 minutes → lights off"
                    self.light_off_at.insert(ri, minute + 5);
                }
                if self.light_off_at.get(&ri).is_some_and(|t| *t <= minute) {
                    self.light_off_at.remove(&ri);
                    if let Some((_, off)) = automations
                        && plan.truth.automations[off]
                            .targets
                            .iter()
                            .any(|t| inner.state(&t.entity_id).is_some_and(|s| s.state == "on"))
                    {
                        self.run_motion(inner, off, motion, "off", at, 0);
                    }
                }
            }
            // media in the evening (and weekend afternoons)
            for media in role.media.iter().filter(|e| !plan.reserved.contains(*e)) {
                // the home's local weekday
                let weekend = is_weekend(day);
                let evening = (1_140..1_350).contains(&m) || (weekend && (840..1_020).contains(&m));
                let want = if home_awake == 0 {
                    "off"
                } else if evening && (role.living || rng.random_bool(0.3)) {
                    "playing"
                } else {
                    "idle"
                };
                let current = inner.state(media).map(|s| s.state.clone());
                if current.as_deref() != Some(want) && (want != "playing" || rng.random_bool(0.2)) {
                    let title = [
                        "Evening News",
                        "Jazz Classics",
                        "Nature Documentary",
                        "Podcast",
                    ][rng.random_range(0..4)];
                    let t = if want == "playing" {
                        json!(title)
                    } else {
                        Value::Null
                    };
                    set_with(inner, media, want, &[("media_title", t)], at);
                }
            }
            for b in &role.batteries {
                if rng.random_bool(1.0 / 2_880.0) {
                    let v = number(inner, b).unwrap_or(100.0);
                    let next = if v <= 5.0 { 100.0 } else { v - 1.0 };
                    set(inner, b, &format!("{}", next as i64), at);
                }
            }
            // plugs: kitchen at breakfast and dinner, office on weekday working hours
            // (their power and energy sensors report on their own schedules, see `report`)
            for (k, (switch, _, _)) in role.plugs.iter().enumerate() {
                if plan.reserved.contains(switch) {
                    continue;
                }
                let key = (ri * 31 + k) as i64;
                let active = home_awake > 0
                    && match key % 3 {
                        0 => (420..450).contains(&m) || (1_080..1_140).contains(&m),
                        1 => (540..1_020).contains(&m),
                        _ => rng.random_bool(0.3),
                    };
                let on = if active { "on" } else { "off" };
                if inner.state(switch).is_some_and(|s| s.state != on) && rng.random_bool(0.5) {
                    set(inner, switch, on, at);
                }
            }
        }
        let _ = home_any;
        // what the sensors reporting on their own schedules need to know of this minute
        self.home_awake = home_awake;
        self.lights_on = inner
            .home
            .states
            .iter()
            .filter(|s| s.domain() == "light" && s.state == "on")
            .count();
    }
}

/// Drives `routine` from the hub's clock until cancelled.
pub(crate) async fn run(
    hub: Arc<Hub>,
    mut routine: Routine,
    speed: f64,
    cancel: CancellationToken,
) {
    // the routine starts where the simulated time does
    hub.with(|inner| {
        let start = inner.clock().start();
        routine.advance(inner, start, i64::MAX);
        inner.routine_at = Some(start);
    });
    // tick often enough to run about one simulated minute per tick
    let tick = Duration::from_secs_f64((30.0 / speed.max(0.001)).clamp(0.005, 0.25));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = cancel.cancelled() => return,
        }
        // catch up with the clock an hour of simulated time per lock, never skipping (30
        // backdated days at a high speed are all simulated), yielding to clients in between
        loop {
            let behind = hub
                .with(|inner| {
                    let now = inner.clock().now();
                    let to = match routine.last_minute() {
                        Some(last) => now.min((last + CATCH_UP + 1) * MINUTE_US - 1),
                        None => now,
                    };
                    routine.advance(inner, to, i64::MAX);
                    inner.routine_at = Some(to);
                    to < now
                })
                .0;
            if !behind || cancel.is_cancelled() {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Simulated minutes the routine runs per hold of the lock when it is behind the clock.
const CATCH_UP: i64 = 60;

#[cfg(test)]
mod tests {
    use super::super::home::{Profile, generate};
    use super::super::hub::Clock;
    use super::*;

    #[test]
    fn days_are_ordered_and_weekends_differ() {
        let mut weekday_leaves = 0;
        let mut weekend_wakes = Vec::new();
        let mut weekday_wakes = Vec::new();
        // 2025-01-06 is a Monday
        let monday = 20_094;
        for week in 0..8 {
            for d in 0..7 {
                let day = monday + week * 7 + d;
                let plan = plan_day(42, 0, true, day);
                assert!(plan.wake < plan.sleep && plan.sleep < DAY);
                assert!(plan.leave <= plan.back);
                if d < 5 {
                    assert!(plan.leave > plan.wake, "{plan:?}");
                    weekday_leaves += 1;
                    weekday_wakes.push(plan.wake);
                } else {
                    weekend_wakes.push(plan.wake);
                }
                assert_eq!(plan, plan_day(42, 0, true, day), "deterministic");
            }
        }
        assert_eq!(weekday_leaves, 40);
        let avg = |v: &[i64]| v.iter().sum::<i64>() as f64 / v.len() as f64;
        assert!(avg(&weekend_wakes) > avg(&weekday_wakes));
    }

    #[test]
    fn a_simulated_day_is_busy_and_consistent() {
        let clock = Clock::new(1.0, 0);
        let hub = Hub::new(
            generate(Profile::Small, 9, clock.now()),
            clock,
            9,
            "t".into(),
            4096,
            1 << 16,
        );
        let (mut rx, _) = hub.subscribe();
        let mut routine = Routine::new(9);
        let start = 20_094 * DAY * MINUTE_US;
        for step in 0..=DAY * 6 {
            hub.with(|inner| routine.advance(inner, start + step * 10_000_000, DAY));
        }
        let mut per_entity: HashMap<String, usize> = HashMap::new();
        let mut total = 0;
        while let Ok(batch) = rx.try_recv() {
            for ev in &batch.events {
                let v: Value = serde_json::from_str(&ev.body).expect("json");
                let new = &v["data"]["new_state"];
                let old = &v["data"]["old_state"];
                // last_changed moves only when the state string changes
                if new["state"] == old["state"] {
                    assert_eq!(new["last_changed"], old["last_changed"]);
                } else {
                    assert_eq!(new["last_changed"], new["last_updated"]);
                }
                *per_entity
                    .entry(v["data"]["entity_id"].as_str().unwrap_or("").to_owned())
                    .or_default() += 1;
                total += 1;
            }
        }
        assert!(total > 1_000, "a day has many changes: {total}");
        assert!(
            per_entity.keys().any(|k| k.starts_with("light.")),
            "lights switch"
        );
        assert!(
            per_entity.keys().any(|k| k.starts_with("person.")),
            "people come and go"
        );
        assert!(
            per_entity
                .keys()
                .any(|k| k.starts_with("binary_sensor.") && k.ends_with("_motion"))
        );
        assert!(per_entity.keys().any(|k| k.starts_with("media_player.")));
        assert!(per_entity.keys().any(|k| k.ends_with("_temperature")));
        assert!(
            per_entity
                .keys()
                .any(|k| k.starts_with("sensor.house_power_phase_"))
        );
    }

    #[test]
    fn local_minutes_follow_the_wall_clock_across_daylight_saving_changes() {
        use chrono::TimeZone;
        let tz: chrono_tz::Tz = "Europe/Amsterdam".parse().expect("tz");
        let at = |y, mo, d, h, mi| {
            Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
                .unwrap()
                .timestamp()
                / 60
        };
        let wall = |minute: i64| {
            let local = local_minute(tz, minute);
            (local.rem_euclid(DAY) / 60, local.rem_euclid(DAY) % 60)
        };
        assert_eq!(wall(at(2026, 1, 15, 6, 0)), (7, 0), "winter: UTC+1");
        assert_eq!(wall(at(2026, 7, 15, 5, 0)), (7, 0), "summer: UTC+2");
        // spring: 01:59 UTC+1 is followed by 03:00 UTC+2
        assert_eq!(wall(at(2026, 3, 29, 0, 59)), (1, 59));
        assert_eq!(wall(at(2026, 3, 29, 1, 0)), (3, 0));
        // autumn: 02:59 UTC+2 is followed by 02:00 UTC+1 (the hour repeats)
        assert_eq!(wall(at(2026, 10, 25, 0, 59)), (2, 59));
        assert_eq!(wall(at(2026, 10, 25, 1, 0)), (2, 0));
        // the local day changes at local midnight
        let before = local_minute(tz, at(2026, 1, 14, 22, 59)).div_euclid(DAY);
        let after = local_minute(tz, at(2026, 1, 14, 23, 0)).div_euclid(DAY);
        assert_eq!(after, before + 1);
        assert_eq!(local_minute(chrono_tz::Tz::UTC, 12_345), 12_345);
    }

    /// People leave and come back at their planned local times in a non-UTC home, also on the
    /// day the clocks change (New York, spring 2026: 8 March).
    #[test]
    fn people_keep_their_local_times_across_a_daylight_saving_change() {
        use chrono::TimeZone;
        let tz: chrono_tz::Tz = "America/New_York".parse().expect("tz");
        let seed = 5;
        let hub = hub_in(Profile::Small, seed, tz, Clock::new(1.0, 0));
        let persons = hub.with(|inner| inner.home.persons.clone()).0;
        let (mut rx, _) = hub.subscribe();
        let mut routine = Routine::new(seed);
        let start = Utc
            .with_ymd_and_hms(2026, 3, 5, 5, 0, 0)
            .unwrap()
            .timestamp()
            / 60;
        let mut changes = Vec::new();
        for minute in start..start + 5 * DAY {
            hub.with(|inner| routine.advance(inner, minute * MINUTE_US, DAY));
            while let Ok(batch) = rx.try_recv() {
                for ev in &batch.events {
                    let v: Value = serde_json::from_str(&ev.body).expect("json");
                    let id = v["data"]["entity_id"].as_str().unwrap_or("").to_owned();
                    if let Some(i) = persons.iter().position(|p| p.entity_id == id) {
                        let state = v["data"]["new_state"]["state"].as_str().unwrap_or("");
                        changes.push((i, state.to_owned(), minute));
                    }
                }
            }
        }
        // the first minute only sets where everyone is; compare the changes after it
        changes.retain(|c| c.2 > start);
        assert!(changes.len() >= 4, "people come and go: {changes:?}");
        for (i, state, minute) in changes {
            let local = local_minute(tz, minute);
            let plan = plan_day(seed, i, persons[i].commutes, local.div_euclid(DAY));
            let expected = if state == "not_home" {
                plan.leave
            } else {
                plan.back
            };
            assert_eq!(
                local.rem_euclid(DAY),
                expected,
                "person {i} {state} at {minute}"
            );
        }
    }

    /// Drives a home's routine for `minutes` simulated minutes from a clock's now in steps of
    /// 250 ms (the routine task's tick at real speed) and returns the simulated times (µs after
    /// the start) of the steps that produced events, and every event's `time_fired` (µs).
    fn run_for(profile: Profile, seed: u64, minutes: i64) -> (Vec<i64>, Vec<i64>) {
        let clock = Clock::new(1.0, 0);
        let start = clock.now();
        let hub = Hub::new(
            generate(profile, seed, start),
            clock,
            seed,
            "t".into(),
            4096,
            1 << 16,
        );
        let (mut rx, _) = hub.subscribe();
        let mut routine = Routine::new(seed);
        let step = 250_000;
        let mut busy_steps = Vec::new();
        let mut fired = Vec::new();
        for k in 0..=minutes * MINUTE_US / step {
            let now = start + k * step;
            hub.with(|inner| routine.advance(inner, now, DAY));
            let mut any = false;
            while let Ok(batch) = rx.try_recv() {
                for ev in &batch.events {
                    let v: Value = serde_json::from_str(&ev.body).expect("json");
                    let t = chrono::DateTime::parse_from_rfc3339(
                        v["time_fired"].as_str().expect("time_fired"),
                    )
                    .expect("rfc3339");
                    fired.push(t.timestamp_micros() - start);
                    any = true;
                }
            }
            if any {
                busy_steps.push(k * step);
            }
        }
        (busy_steps, fired)
    }

    #[test]
    fn report_times_depend_on_the_seed_and_sensor_only() {
        let a = Reporter::new(3, Sensor::MeterPower, "sensor.house_power");
        let b = Reporter::new(3, Sensor::MeterPower, "sensor.house_power");
        let c = Reporter::new(4, Sensor::MeterPower, "sensor.house_power");
        let t0 = 1_795_000_000_000_000;
        let times = |r: &Reporter| {
            let n = r.first_from(t0);
            (n..n + 50).map(|n| r.at(n)).collect::<Vec<_>>()
        };
        assert_eq!(times(&a), times(&b));
        assert_ne!(times(&a), times(&c));
        let t = times(&a);
        assert!(t[0] >= t0 && t.windows(2).all(|w| w[0] < w[1]));
        assert!(t.windows(2).all(|w| w[1] - w[0] <= 5_000_000), "{t:?}");
    }

    #[test]
    fn sensors_report_all_the_time_not_once_a_minute() {
        for (profile, seed) in [(Profile::Small, 1), (Profile::Medium, 7)] {
            let (busy, fired) = run_for(profile, seed, 5);
            // after the first minute, no 5 s without an event (it was 60 s: everything happened
            // on the minute)
            let (mut max_gap, mut previous) = (0, MINUTE_US);
            for t in busy
                .into_iter()
                .filter(|t| *t >= MINUTE_US)
                .chain([5 * MINUTE_US])
            {
                max_gap = max_gap.max(t - previous);
                previous = t;
            }
            assert!(
                max_gap <= 5_000_000,
                "{profile:?}: {} µs without an event",
                max_gap
            );
            // each change stamped when it was due: spread over time, in order
            assert!(fired.windows(2).all(|w| w[0] < w[1]), "time_fired in order");
            let seconds: std::collections::HashSet<i64> =
                fired.iter().map(|t| t / 1_000_000).collect();
            assert!(
                seconds.len() > 120,
                "{profile:?}: events in {} distinct seconds",
                seconds.len()
            );
        }
    }

    /// A hub for a generated home in time zone `tz` on `clock`.
    fn hub_in(profile: Profile, seed: u64, tz: chrono_tz::Tz, clock: Clock) -> Hub {
        Hub::new(
            generate(profile, seed, clock.now()),
            clock,
            seed,
            "t".into(),
            4096,
            1 << 20,
        )
        .in_time_zone(tz)
    }

    /// Every event a home's routine publishes from local `start` (UTC minute) for `days` days in
    /// time zone `tz`, as parsed JSON, in publication order.
    fn events_of(
        profile: Profile,
        seed: u64,
        tz: chrono_tz::Tz,
        start: i64,
        days: i64,
    ) -> (Hub, Vec<Value>) {
        // a clock from before `start`, so changes are stamped when they were due
        let clock = Clock::new(
            1.0,
            Utc::now().timestamp_micros() - (start - 60) * MINUTE_US,
        );
        let hub = hub_in(profile, seed, tz, clock);
        let (mut rx, _) = hub.subscribe();
        let mut routine = Routine::new(seed);
        let mut out = Vec::new();
        for hour in 0..=days * 24 {
            hub.with(|inner| routine.advance(inner, (start + hour * 60) * MINUTE_US, i64::MAX));
            while let Ok(batch) = rx.try_recv() {
                for ev in &batch.events {
                    // sensors' reports carry no user and no parent, and are most events
                    if ev.body.starts_with(
                        "{\"event_type\":\"state_changed\",\"data\":{\"entity_id\":\"sensor.",
                    ) {
                        continue;
                    }
                    out.push(serde_json::from_str(&ev.body).expect("json"));
                }
            }
        }
        (hub, out)
    }

    fn utc_minute(y: i32, mo: u32, d: u32, h: u32) -> i64 {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0)
            .single()
            .expect("a time")
            .timestamp()
            / 60
    }

    fn fired_minute(ev: &Value) -> i64 {
        chrono::DateTime::parse_from_rfc3339(ev["time_fired"].as_str().expect("time_fired"))
            .expect("rfc3339")
            .timestamp()
            .div_euclid(60)
    }

    /// Circular distance of two minutes of the day.
    fn distance(a: i64, b: i64) -> i64 {
        let d = (a - b).rem_euclid(DAY);
        d.min(DAY - d)
    }

    /// Planted habits happen at their local time in Amsterdam across both daylight-saving changes
    /// of 2026 (29 March, 25 October), by a real user; the add-on's changes by its system user.
    #[test]
    fn habits_keep_their_local_time_across_daylight_saving_changes() {
        let tz: chrono_tz::Tz = "Europe/Amsterdam".parse().expect("tz");
        let seed = 4;
        for start in [utc_minute(2026, 3, 25, 0), utc_minute(2026, 10, 21, 0)] {
            let (hub, events) = events_of(Profile::Small, seed, tz, start, 6);
            let routines = hub.routines();
            let system: Vec<&str> = routines
                .users
                .iter()
                .filter(|u| u.system_generated)
                .map(|u| u.id.as_str())
                .collect();
            let people: Vec<&str> = routines
                .users
                .iter()
                .filter(|u| !u.system_generated)
                .map(|u| u.id.as_str())
                .collect();
            let mut on_time = vec![0; routines.habits.len()];
            let mut by_system = 0;
            // a script runs in its caller's context, announced by script_started first
            let mut script_runs = Vec::new();
            let mut by_script = 0;
            let mut seen = std::collections::HashSet::new();
            for ev in &events {
                if ev["event_type"] == "script_started" {
                    assert!(
                        !seen.contains(&ev["context"]["id"]),
                        "nothing of the run before"
                    );
                    assert_eq!(ev["data"]["entity_id"], "script.movie_time");
                    assert_eq!(
                        ev["context"]["user_id"],
                        routines.scripts[0].user_id.as_str()
                    );
                    assert!(ev["context"]["parent_id"].is_null());
                    script_runs.push(ev["context"]["id"].clone());
                } else if script_runs.contains(&ev["context"]["id"]) {
                    by_script += 1;
                }
                seen.insert(ev["context"]["id"].clone());
            }
            // the script's entity on and off, and its target
            assert!(!script_runs.is_empty() && by_script >= 2 * script_runs.len());
            for ev in events.iter().filter(|e| e["event_type"] == "state_changed") {
                let Some(user) = ev["context"]["user_id"].as_str() else {
                    continue;
                };
                if script_runs.contains(&ev["context"]["id"]) {
                    continue;
                }
                let entity = ev["data"]["entity_id"].as_str().unwrap_or_default();
                let state = ev["data"]["new_state"]["state"]
                    .as_str()
                    .unwrap_or_default();
                assert_eq!(ev["data"]["new_state"]["context"], ev["context"]);
                if system.contains(&user) {
                    by_system += 1;
                    assert!(
                        routines
                            .system_changes
                            .iter()
                            .any(|c| c.entity_id == entity && c.user_id == user),
                        "{ev}"
                    );
                    continue;
                }
                assert!(people.contains(&user), "{ev}");
                let local = local_minute(tz, fired_minute(ev)).rem_euclid(DAY);
                let mine: Vec<usize> = (0..routines.habits.len())
                    .filter(|&i| {
                        routines.habits[i].entity_id == entity && routines.habits[i].state == state
                    })
                    .collect();
                let jitter = |i: usize| i64::from(routines.habits[i].jitter_minutes);
                let d = |i: usize| distance(local, routines.habits[i].minute);
                match mine.iter().find(|&&i| d(i) <= jitter(i)) {
                    Some(&i) => {
                        assert_eq!(routines.habits[i].user_id, user);
                        on_time[i] += 1;
                    }
                    // or put back hours later when the second of a pair did not happen
                    None => assert!(
                        mine.iter().all(|&i| d(i) >= 100),
                        "{entity} {state} at {}",
                        super::super::truth::hhmm(local),
                    ),
                }
            }
            assert!(by_system >= 8, "the add-on acts every morning: {by_system}");
            // over 6 days every daily habit with p ≥ 0.8 happened on time at least twice
            for (h, n) in routines.habits.iter().zip(&on_time) {
                if h.day_type == super::super::truth::DayType::All && h.probability >= 0.8 {
                    assert!(*n >= 2, "{h:?}: {n} times");
                }
            }
            assert!(on_time.iter().sum::<usize>() >= 10, "{on_time:?}");
        }
    }

    /// A motion automation runs in a new context whose parent is the motion's; its
    /// `automation_triggered` comes before its changes, which carry the run's context. A
    /// time-triggered one has no parent.
    #[test]
    fn automations_run_in_contexts_as_home_assistant_runs_them() {
        let tz: chrono_tz::Tz = "Europe/Amsterdam".parse().expect("tz");
        // Tuesday 2026-01-13, from 00:00 local, two days
        let (hub, events) = events_of(Profile::Small, 2, tz, utc_minute(2026, 1, 12, 23), 2);
        let routines = hub.routines();
        let mut state_runs = 0;
        let mut time_runs = 0;
        for (k, ev) in events.iter().enumerate() {
            if ev["event_type"] != "automation_triggered" {
                continue;
            }
            let run = &ev["context"];
            assert!(run["user_id"].is_null());
            let entity = ev["data"]["entity_id"].as_str().expect("entity_id");
            let planted = routines
                .automations
                .iter()
                .find(|a| a.entity_id == entity)
                .expect("a planted automation");
            let source = ev["data"]["source"].as_str().expect("source");
            let later: Vec<&Value> = events[k + 1..]
                .iter()
                .filter(|e| e["event_type"] == "state_changed" && e["context"]["id"] == run["id"])
                .collect();
            for change in &later {
                assert_eq!(change["context"], *run, "the run's context");
                assert!(
                    planted
                        .targets
                        .iter()
                        .any(|t| t.entity_id == change["data"]["entity_id"]),
                    "{change}"
                );
            }
            // nothing of the run before its automation_triggered but its last_triggered
            assert!(
                events[..k]
                    .iter()
                    .all(|e| e["context"]["id"] != run["id"] || e["data"]["entity_id"] == entity)
            );
            match planted.trigger.platform {
                super::super::truth::TriggerPlatform::State => {
                    let trigger = planted.trigger.entity_id.as_deref().expect("trigger");
                    assert_eq!(source, format!("state of {trigger}"));
                    let last = events[..k]
                        .iter()
                        .rev()
                        .find(|e| {
                            e["event_type"] == "state_changed" && e["data"]["entity_id"] == trigger
                        })
                        .expect("the trigger's change");
                    assert_eq!(run["parent_id"], last["context"]["id"]);
                    if !later.is_empty() {
                        state_runs += 1;
                    }
                }
                super::super::truth::TriggerPlatform::Time => {
                    assert_eq!(source, "time");
                    assert!(run["parent_id"].is_null());
                    let at = local_minute(tz, fired_minute(ev)).rem_euclid(DAY);
                    assert_eq!(Some(super::super::truth::hhmm(at)), planted.trigger.at);
                    assert_eq!(later.len(), 1, "{ev}");
                    time_runs += 1;
                }
            }
        }
        assert!(state_runs >= 3, "motion turned lights on: {state_runs}");
        assert_eq!(time_runs, 4, "coffee on and off, Tuesday and Wednesday");
    }

    /// A clock started three days back at a million times real speed: the routine simulates
    /// every hour of the three days (it used to skip all but the last day when it fell behind).
    #[tokio::test]
    async fn a_backdated_fast_clock_has_every_past_hour_simulated() {
        let days = 3;
        let clock = Clock::new(1e6, days * DAY * MINUTE_US);
        let hub = Arc::new(hub_in(Profile::Small, 3, chrono_tz::Tz::UTC, clock));
        let (mut rx, _) = hub.subscribe();
        let start = hub.with(|i| i.clock().now()).0;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(hub.clone(), Routine::new(3), 1e6, cancel.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        let mut hours = std::collections::BTreeSet::new();
        loop {
            let done = hub
                .with(|i| {
                    i.clock().caught_up()
                        && i.routine_at
                            .is_some_and(|t| t >= i.clock().now() - MINUTE_US)
                })
                .0;
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(batch)) => {
                    // a batch is what one hold of the lock produced: look at its first event
                    let first = batch
                        .events
                        .first()
                        .map(|e| e.body.as_str())
                        .unwrap_or("{}");
                    let v: Value = serde_json::from_str(first).expect("json");
                    if let Some(t) = v["time_fired"].as_str() {
                        let t = chrono::DateTime::parse_from_rfc3339(t)
                            .expect("rfc3339")
                            .timestamp_micros();
                        hours.insert((t - start).div_euclid(60 * MINUTE_US));
                    }
                }
                Ok(Err(e)) => panic!("bus: {e}"),
                Err(_) => panic!("not caught up in time: {} hours seen", hours.len()),
            }
            if done && rx.is_empty() {
                break;
            }
        }
        cancel.cancel();
        task.await.expect("routine task");
        let expected = (days * 24) as usize;
        assert!(
            hours.len() >= expected - 1,
            "{} of {expected} hours: {hours:?}",
            hours.len()
        );
    }
}
