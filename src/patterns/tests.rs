//! The detectors on hand-built histories.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::config::AnalysisSettings;
use crate::store::origin::OriginKind;

const USER: OriginKind = OriginKind::User;

fn amsterdam() -> Tz {
    "Europe/Amsterdam".parse().expect("tz")
}

/// `date` at `h:m:s` on the wall clock of `tz` (the earlier instant when it repeats).
fn at(tz: Tz, date: NaiveDate, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    let second = h * 3_600 + m * 60 + s;
    let unix = instant(tz, date, second).expect("local time");
    DateTime::from_timestamp(unix, 0).expect("time")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

/// A history under construction.
#[derive(Default)]
struct History {
    changes: Vec<(String, String, DateTime<Utc>, OriginKind)>,
    classes: Vec<(String, String)>,
}

impl History {
    fn set(&mut self, entity: &str, state: &str, time: DateTime<Utc>, origin: OriginKind) {
        self.changes
            .push((entity.to_owned(), state.to_owned(), time, origin));
    }

    /// `entity` turned `on` at `time` by `origin` and `off` (by the device) `minutes` later,
    /// plus up to four hours that vary from one time to the next (no habit of its own).
    fn pulse(&mut self, entity: &str, time: DateTime<Utc>, origin: OriginKind, minutes: i64) {
        // splitmix64 of the time: varies from one pulse to the next
        let mut x = time
            .timestamp()
            .cast_unsigned()
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let extra = i64::try_from((x ^ (x >> 31)) % 240).unwrap_or(0);
        self.pulse_for(entity, time, origin, Duration::minutes(minutes + extra));
    }

    /// `entity` turned `on` at `time` by `origin` and `off` (by the device) after `length`.
    fn pulse_for(
        &mut self,
        entity: &str,
        time: DateTime<Utc>,
        origin: OriginKind,
        length: Duration,
    ) {
        self.set(entity, "on", time, origin);
        self.set(entity, "off", time + length, OriginKind::Device);
    }

    /// The front door opens at each of `hours` (within the hour) on `day`, and the hall light
    /// follows within 20–90 s 85 % of the time.
    fn door_then_hall_light(
        &mut self,
        tz: Tz,
        day: NaiveDate,
        hours: impl IntoIterator<Item = u32>,
        rng: &mut StdRng,
    ) {
        for hour in hours {
            let t = at(tz, day, hour, rng.random_range(0..60), 0);
            self.pulse_for(
                "binary_sensor.front_door",
                t,
                OriginKind::Device,
                Duration::seconds(40),
            );
            if rng.random_bool(0.85) {
                let delay = Duration::seconds(rng.random_range(20..=90));
                self.pulse_for("light.hallway", t + delay, USER, Duration::minutes(5));
            }
        }
    }

    fn run(&self, settings: &AnalysisSettings, tz: Tz, end: DateTime<Utc>) -> Vec<Pattern> {
        let mut changes = self.changes.clone();
        changes.sort_by_key(|c| c.2);
        let mut a = Analyzer::new(Params::new(settings, tz, end));
        for (entity, class) in &self.classes {
            a.set_device_class(entity, class);
        }
        for (entity, state, time, origin) in &changes {
            a.push(Change {
                entity_id: entity,
                state,
                time: *time,
                origin: *origin,
            });
        }
        a.finish().0
    }
}

/// Every entity of `entities` starts `off` a day before the window.
fn primed(entities: &[&str], start: DateTime<Utc>) -> History {
    let mut h = History::default();
    for e in entities {
        h.set(e, "off", start - Duration::days(1), OriginKind::Device);
    }
    h
}

/// Whether `co` holds "front door on, then hall light on".
fn door_then_hall_light(co: &[&Pattern]) -> bool {
    co.iter().any(|p| {
        p.entities[0].entity_id == "binary_sensor.front_door"
            && p.entities[0].state == "on"
            && p.entities[1].entity_id == "light.hallway"
            && p.entities[1].state == "on"
    })
}

fn of_kind(patterns: &[Pattern], kind: PatternKind) -> Vec<&Pattern> {
    patterns.iter().filter(|p| p.kind == kind).collect()
}

fn minutes(hhmm: &str) -> i64 {
    let (h, m) = hhmm.split_once(':').expect("HH:MM");
    h.parse::<i64>().expect("h") * 60 + m.parse::<i64>().expect("m")
}

/// Minutes between two `HH:MM` on the circle.
fn circle(a: &str, b: &str) -> i64 {
    let d = (minutes(a) - minutes(b)).rem_euclid(1_440);
    d.min(1_440 - d)
}

fn describe(patterns: &[Pattern]) -> String {
    patterns
        .iter()
        .map(|p| {
            format!(
                "{} {:?} {} {:?} occ={} conf={} lift={:?}",
                p.kind.as_str(),
                p.entities
                    .iter()
                    .map(|e| format!("{}={}", e.entity_id, e.state))
                    .collect::<Vec<_>>(),
                p.day_type.as_str(),
                p.time_window.as_ref().map(|w| w.centre.clone()),
                p.occurrences,
                p.confidence,
                p.lift
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A 30-day window ending at 03:00 local on `end_date`, and its first local date.
fn window(tz: Tz, end_date: NaiveDate) -> (DateTime<Utc>, NaiveDate) {
    (at(tz, end_date, 3, 0, 0), end_date - Duration::days(30))
}

#[test]
fn a_habit_around_midnight_wraps() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 6, 30));
    let mut h = primed(&["light.porch"], end - Duration::days(31));
    let mut rng = StdRng::seed_from_u64(1);
    for d in 0..30 {
        // 23:55 ± 10 min: some days before midnight, some after
        let jitter = rng.random_range(-600..=600);
        let t = at(tz, first + Duration::days(d), 23, 55, 0) + Duration::seconds(jitter);
        h.pulse("light.porch", t, USER, 30);
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let tod = of_kind(&patterns, PatternKind::TimeOfDay);
    assert_eq!(tod.len(), 1, "{}", describe(&patterns));
    let p = tod[0];
    assert_eq!(p.day_type, DayType::All);
    assert_eq!(p.entities[0].state, "on");
    let w = p.time_window.as_ref().expect("window");
    assert!(circle(&w.centre, "23:55") <= 4, "{w:?}");
    assert!(circle(&w.start, "23:45") <= 3, "{w:?}");
    assert!(circle(&w.end, "00:05") <= 3, "{w:?}");
    assert!(w.spread_minutes < 8.0, "{w:?}");
    assert!(p.occurrences >= 29, "{}", describe(&patterns));
    assert!(p.confidence > 0.9, "{}", describe(&patterns));
    // the evidence holds one occurrence per day (00:05 counts for the evening before)
    assert_eq!(p.evidence.len() as u32, p.occurrences);
    assert!(
        p.evidence
            .iter()
            .all(|o| o.local_time.starts_with("23:") || o.local_time.starts_with("00:"))
    );
}

/// A 07:00 (±5 min) habit over the 30 days around a daylight-saving change stays 07:00.
fn dst_habit(end_date: NaiveDate) {
    let tz = amsterdam();
    let (end, first) = window(tz, end_date);
    let mut h = primed(&["switch.coffee"], end - Duration::days(31));
    let mut rng = StdRng::seed_from_u64(2);
    for d in 0..30 {
        let t = at(tz, first + Duration::days(d), 7, 0, 0)
            + Duration::seconds(rng.random_range(-300..=300));
        h.pulse("switch.coffee", t, USER, 20);
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    assert_eq!(patterns.len(), 1, "{}", describe(&patterns));
    let p = &patterns[0];
    let w = p.time_window.as_ref().expect("window");
    assert_eq!(p.day_type, DayType::All);
    assert!(circle(&w.centre, "07:00") <= 2, "{w:?}");
    assert!(
        w.spread_minutes < 5.0,
        "an hour's shift on half the days would spread it: {w:?}"
    );
    assert_eq!(p.occurrences, 30);
    assert_eq!(p.eligible_days, Some(30));
    assert!(p.confidence > 0.95, "{}", describe(&patterns));
}

#[test]
fn a_habit_keeps_its_local_time_across_the_spring_change() {
    // the last Sunday of March 2026 is the 29th
    dst_habit(date(2026, 4, 12));
}

#[test]
fn a_habit_keeps_its_local_time_across_the_autumn_change() {
    // the last Sunday of October 2026 is the 25th
    dst_habit(date(2026, 11, 8));
}

#[test]
fn a_weekday_only_habit_is_reported_as_weekday() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 5, 31));
    let mut h = primed(&["switch.kettle"], end - Duration::days(31));
    let mut rng = StdRng::seed_from_u64(3);
    for d in 0..30 {
        let day = first + Duration::days(d);
        use chrono::Datelike;
        if day.weekday().number_from_monday() <= 5 {
            let t = at(tz, day, 6, 45, 0) + Duration::seconds(rng.random_range(-420..=420));
            h.pulse("switch.kettle", t, USER, 5);
        }
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    assert_eq!(patterns.len(), 1, "{}", describe(&patterns));
    let p = &patterns[0];
    assert_eq!(p.day_type, DayType::Weekday, "{}", describe(&patterns));
    assert_eq!(Some(p.occurrences), p.eligible_days);
    assert!(p.confidence > 0.9);
    assert!(
        p.evidence.iter().all(|o| {
            use chrono::Datelike;
            o.local_date.weekday().number_from_monday() <= 5
        }),
        "weekday evidence only"
    );
}

#[test]
fn a_weekend_habit_with_eight_chances_meets_the_scaled_minimum() {
    let tz = amsterdam();
    // 30 days from Monday 2026-05-04 03:00: 8 Saturdays and Sundays at 09:30
    let (end, first) = window(tz, date(2026, 6, 3));
    let mut h = primed(
        &["light.kitchen", "media_player.radio"],
        end - Duration::days(31),
    );
    let mut weekend_days = 0;
    let mut rng = StdRng::seed_from_u64(4);
    for d in 0..30 {
        let day = first + Duration::days(d);
        use chrono::Datelike;
        if day.weekday().number_from_monday() > 5 {
            weekend_days += 1;
            let t = at(tz, day, 9, 30, 0) + Duration::seconds(rng.random_range(-600..=600));
            // on all weekend days but one: 7 of 8, fewer than light's 8 for a daily pattern
            if weekend_days != 3 {
                h.pulse("light.kitchen", t, USER, 60);
            }
        }
    }
    assert_eq!(weekend_days, 8);
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    assert_eq!(patterns.len(), 1, "{}", describe(&patterns));
    let p = &patterns[0];
    assert_eq!(p.day_type, DayType::Weekend);
    assert_eq!(p.occurrences, 7);
    assert_eq!(p.eligible_days, Some(8));
    assert!(
        (p.confidence - 0.86).abs() < 0.03,
        "{}",
        describe(&patterns)
    );

    // with only 2 of 8 weekend days it is below ceil(8 × 8 / 30) = 3 occurrences
    let mut h = primed(&["light.kitchen"], end - Duration::days(31));
    let mut weekend_days = 0;
    for d in 0..30 {
        let day = first + Duration::days(d);
        use chrono::Datelike;
        if day.weekday().number_from_monday() > 5 {
            weekend_days += 1;
            if weekend_days <= 2 {
                h.pulse("light.kitchen", at(tz, day, 9, 30, 0), USER, 60);
            }
        }
    }
    let mut settings = AnalysisSettings::default();
    settings.domain_overrides[0].min_confidence = Some(0.2);
    let patterns = h.run(&settings, tz, end);
    assert!(patterns.is_empty(), "{}", describe(&patterns));
}

#[test]
fn changes_of_automations_and_system_users_are_never_habits() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 9, 30));
    let mut h = primed(
        &[
            "switch.heater",
            "light.hall",
            "binary_sensor.front_door",
            "light.desk",
        ],
        end - Duration::days(31),
    );
    let mut rng = StdRng::seed_from_u64(5);
    for d in 0..30 {
        let day = first + Duration::days(d);
        // a time-triggered automation at 06:30 (no user, no parent: attributed `automation`)
        h.pulse(
            "switch.heater",
            at(tz, day, 6, 30, 0),
            OriginKind::Automation,
            60,
        );
        // an add-on (a system user) at 21:00
        h.pulse("light.desk", at(tz, day, 21, 0, 0), OriginKind::System, 60);
        // a state-triggered automation: the door opens, the hall light follows in 2-4 s
        for _ in 0..4 {
            let t = at(tz, day, rng.random_range(7..22), rng.random_range(0..60), 0);
            h.pulse("binary_sensor.front_door", t, OriginKind::Device, 1);
            h.pulse(
                "light.hall",
                t + Duration::seconds(rng.random_range(2..5)),
                OriginKind::Automation,
                3,
            );
        }
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    assert!(patterns.is_empty(), "{}", describe(&patterns));

    // the same history made by hand is found: the test can fail
    for c in &mut h.changes {
        if c.3.is_automated() {
            c.3 = USER;
        }
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let tod = of_kind(&patterns, PatternKind::TimeOfDay);
    assert!(
        tod.iter()
            .any(|p| p.entities[0].entity_id == "switch.heater"),
        "{}",
        describe(&patterns)
    );
    assert!(
        tod.iter().any(|p| p.entities[0].entity_id == "light.desk"),
        "{}",
        describe(&patterns)
    );
    assert!(
        of_kind(&patterns, PatternKind::CoOccurrence)
            .iter()
            .any(|p| p.entities[1].entity_id == "light.hall"),
        "{}",
        describe(&patterns)
    );
}

#[test]
fn attribute_only_updates_are_not_occurrences() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 7, 31));
    let mut h = primed(&["light.tv"], end - Duration::days(31));
    for d in 0..30 {
        let day = first + Duration::days(d);
        if d < 4 {
            // turned on at 20:00 on four days only: too few for a pattern
            h.pulse("light.tv", at(tz, day, 20, 0, 0), USER, 120);
        } else {
            // on since the afternoon; at 20:00 only its brightness changes (same state)
            h.set("light.tv", "on", at(tz, day, 15, rng_minute(d), 0), USER);
            h.set("light.tv", "on", at(tz, day, 20, 0, 0), USER);
            h.set("light.tv", "on", at(tz, day, 20, 1, 0), USER);
            h.set("light.tv", "off", at(tz, day, 23, 0, 0), USER);
        }
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    assert!(
        !patterns.iter().any(|p| p
            .time_window
            .as_ref()
            .is_some_and(|w| circle(&w.centre, "20:00") < 30)),
        "{}",
        describe(&patterns)
    );
}

/// A minute that differs from day to day (an afternoon with no habit).
fn rng_minute(d: i64) -> u32 {
    u32::try_from((d * 37).rem_euclid(60)).unwrap_or(0)
}

#[test]
fn returning_from_unavailable_is_not_a_transition() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 8, 31));
    let mut h = primed(&["switch.fridge", "light.garden"], end - Duration::days(31));
    for d in 0..30 {
        let day = first + Duration::days(d);
        // a flaky plug drops off every night and comes back `on`
        h.set("switch.fridge", "on", at(tz, day, 1, 0, 0), USER);
        h.set(
            "switch.fridge",
            "unavailable",
            at(tz, day, 3, 0, 0),
            OriginKind::Device,
        );
        h.set(
            "switch.fridge",
            "on",
            at(tz, day, 3, 5, 0),
            OriginKind::Device,
        );
        let off = at(tz, day, 12, 0, 0) + Duration::minutes(rng_minute(d).into()) * 7;
        h.set("switch.fridge", "off", off, OriginKind::Device);
        // and a light that stays on, restored as `unknown` then `on` after a restart at 04:00
        h.set(
            "light.garden",
            "unknown",
            at(tz, day, 4, 0, 0),
            OriginKind::Device,
        );
        h.set(
            "light.garden",
            "on",
            at(tz, day, 4, 0, 30),
            OriginKind::Device,
        );
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    // 01:00 `on` by hand is a habit (the plug was turned off the day before); 03:05 and 04:00
    // are none
    for p in &patterns {
        let w = p.time_window.as_ref().expect("time of day only");
        assert!(circle(&w.centre, "01:00") < 5, "{}", describe(&patterns));
        assert_eq!(p.entities[0].entity_id, "switch.fridge");
    }
    assert_eq!(
        patterns
            .iter()
            .filter(|p| p.entities[0].state == "on")
            .count(),
        1,
        "{}",
        describe(&patterns)
    );
}

#[test]
fn door_then_light_is_found_with_its_delay_and_lift() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 10, 15));
    let start = end - Duration::days(30);
    let mut h = primed(
        &["binary_sensor.front_door", "light.hallway"],
        start - Duration::days(1),
    );
    let mut rng = StdRng::seed_from_u64(6);
    let mut door_opens = 0u32;
    let mut followed = 0u32;
    let mut delays = Vec::new();
    let mut light_times = Vec::new();
    for d in 0..30 {
        let day = first + Duration::days(d);
        for slot in 0..5 {
            // the door opens about every 3 hours between 07:00 and 22:00
            let t = at(tz, day, 7 + slot * 3, rng.random_range(0..120), 0)
                + Duration::seconds(rng.random_range(0..60));
            h.pulse_for(
                "binary_sensor.front_door",
                t,
                OriginKind::Device,
                Duration::seconds(rng.random_range(20..120)),
            );
            door_opens += 1;
            if rng.random_bool(0.8) {
                let delay = rng.random_range(30..=90);
                delays.push(delay);
                followed += 1;
                let length = Duration::seconds(rng.random_range(120..1_200));
                h.pulse_for("light.hallway", t + Duration::seconds(delay), USER, length);
                light_times.push((t + Duration::seconds(delay)).timestamp());
            }
        }
        // and once a day by hand without the door, at 01:00-05:00
        let t = at(tz, day, rng.random_range(1..5), rng.random_range(0..60), 0);
        h.pulse_for("light.hallway", t, USER, Duration::minutes(4));
        light_times.push(t.timestamp());
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let co = of_kind(&patterns, PatternKind::CoOccurrence);
    assert_eq!(co.len(), 1, "{}", describe(&patterns));
    let p = co[0];
    assert_eq!(
        (
            p.entities[0].entity_id.as_str(),
            p.entities[0].state.as_str()
        ),
        ("binary_sensor.front_door", "on")
    );
    assert_eq!(
        (
            p.entities[1].entity_id.as_str(),
            p.entities[1].state.as_str()
        ),
        ("light.hallway", "on")
    );
    assert_eq!(p.day_type, DayType::All);
    assert_eq!(p.occurrences, followed);
    assert_eq!(p.trigger_occurrences, Some(door_opens));
    let confidence = f64::from(followed) / f64::from(door_opens);
    assert!((p.confidence - confidence).abs() < 0.001);
    // median and IQR of the evidence: the most recent 100
    let recent_delays = delays.split_off(delays.len().saturating_sub(EVIDENCE_CAP));
    let mut delays = recent_delays.clone();
    delays.sort_unstable();
    let n = delays.len();
    let median = if n % 2 == 1 {
        delays[n / 2]
    } else {
        (delays[n / 2 - 1] + delays[n / 2] + 1) / 2
    };
    let delay = p.delay.as_ref().expect("delay");
    assert!(
        delay.median_seconds.abs_diff(median as u32) <= 1,
        "{delay:?} vs {median}"
    );
    assert!(delay.min_seconds <= delays[0] as u32);
    assert!(delay.max_seconds >= delays[n - 1] as u32);
    assert!((30..=33).contains(&delay.min_seconds) && (87..=90).contains(&delay.max_seconds));
    // lift: confidence over the share of time after which the light follows within 300 s
    light_times.sort_unstable();
    let mut covered = 0i64;
    let mut reach = i64::MIN;
    for t in &light_times {
        let from = (t - 300).max(reach);
        covered += (t - from).max(0);
        reach = reach.max(*t);
    }
    // history starts with the first change in the window: the first door opening
    let data_start = h
        .changes
        .iter()
        .map(|c| c.2)
        .filter(|t| *t >= start)
        .min()
        .expect("changes")
        .timestamp();
    let base = covered as f64 / (end.timestamp() - data_start) as f64;
    let lift = p.lift.expect("lift");
    assert!(
        (lift - confidence / base).abs() / lift < 0.01,
        "{lift} vs {}",
        confidence / base
    );
    assert!(lift > 20.0);
    // the evidence holds each occurrence with its delay
    assert_eq!(p.evidence.len(), (followed as usize).min(EVIDENCE_CAP));
    assert!(
        p.evidence.windows(2).all(|w| w[0].time < w[1].time),
        "the most recent, oldest first"
    );
    assert_eq!(p.evidence.last().map(|o| o.time), Some(p.last_seen));
    let delays_shown: Vec<u32> = p.evidence.iter().filter_map(|o| o.delay_seconds).collect();
    assert_eq!(
        delays_shown,
        recent_delays.iter().map(|d| *d as u32).collect::<Vec<_>>()
    );
    assert!(
        p.evidence
            .iter()
            .all(|o| o.delay_seconds.is_some_and(|d| (30..=90).contains(&d)))
    );
}

#[test]
fn random_noise_gives_no_pattern() {
    let tz = amsterdam();
    let (end, _) = window(tz, date(2026, 3, 1));
    let start = end - Duration::days(30);
    // NOISE_SEEDS=30 tries more homes (none gave a pattern when the constants were chosen)
    let seeds: u64 = std::env::var("NOISE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(7 + seed);
        let mut entities = Vec::new();
        for i in 0..40 {
            let domain = ["light", "switch", "fan", "media_player"][i % 4];
            entities.push(format!("{domain}.noise_{i}"));
        }
        for i in 0..20 {
            entities.push(format!("binary_sensor.motion_{i}"));
        }
        let refs: Vec<&str> = entities.iter().map(String::as_str).collect();
        let mut h = primed(&refs, start);
        for (i, e) in entities.iter().enumerate() {
            // from once every two days to forty times a day, at random moments
            let per_day = [0.5, 1.0, 3.0, 8.0, 20.0, 40.0][i % 6];
            let n = (per_day * 30.0) as usize;
            for _ in 0..n {
                let t = start + Duration::seconds(rng.random_range(0..30 * 86_400));
                h.pulse(e, t, USER, rng.random_range(1..30));
            }
        }
        let patterns = h.run(&AnalysisSettings::default(), tz, end);
        assert!(patterns.is_empty(), "seed {seed}: {}", describe(&patterns));
    }
}

#[test]
fn a_lock_needs_a_confidence_of_0_85() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 12, 1));
    let entities = ["lock.front", "light.porch", "cover.garage", "cover.blind"];
    let run = |share_of_days: usize| {
        let mut h = primed(&entities, end - Duration::days(31));
        h.classes = vec![
            ("cover.garage".into(), "garage".into()),
            ("cover.blind".into(), "blind".into()),
        ];
        for d in 0..30usize {
            if d % 10 >= share_of_days {
                continue;
            }
            let day = first + Duration::days(d as i64);
            let t = at(tz, day, 22, 0, 0);
            h.set("lock.front", "unlocked", t - Duration::hours(2), USER);
            h.set("lock.front", "locked", t, USER);
            h.pulse("light.porch", t, USER, 30);
            h.set("cover.garage", "open", t - Duration::hours(2), USER);
            h.set("cover.garage", "closed", t, USER);
            h.set("cover.blind", "open", t - Duration::hours(2), USER);
            h.set("cover.blind", "closed", t, USER);
        }
        let patterns = h.run(&AnalysisSettings::default(), tz, end);
        let mut found: Vec<(String, String)> = of_kind(&patterns, PatternKind::TimeOfDay)
            .iter()
            .filter(|p| p.time_window.as_ref().is_some_and(|w| w.centre == "22:00"))
            .map(|p| (p.entities[0].entity_id.clone(), p.entities[0].state.clone()))
            .collect();
        found.sort();
        found
    };
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    // 8 days in 10: a light (0.6) and a blind (0.7) are habits, a lock and a garage door are not
    assert_eq!(run(8), [s("cover.blind", "closed"), s("light.porch", "on")]);
    // 9 days in 10 are enough for all of them
    assert_eq!(
        run(9),
        [
            s("cover.blind", "closed"),
            s("cover.garage", "closed"),
            s("light.porch", "on"),
            s("lock.front", "locked")
        ]
    );
}

#[test]
fn a_drifting_habit_keeps_its_id() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 2, 10));
    let run = |drift_minutes: i64| {
        let mut h = primed(&["light.bedroom"], end - Duration::days(31));
        for d in 0..30 {
            let drift = drift_minutes * d / 29;
            let t = at(tz, first + Duration::days(d), 7, 0, 0) + Duration::minutes(drift);
            h.pulse("light.bedroom", t, USER, 30);
        }
        h.run(&AnalysisSettings::default(), tz, end)
    };
    let steady = run(0);
    let drifting = run(20);
    assert_eq!(steady.len(), 1, "{}", describe(&steady));
    assert_eq!(drifting.len(), 1, "{}", describe(&drifting));
    assert_eq!(steady[0].id, drifting[0].id);
    let w = drifting[0].time_window.as_ref().expect("window");
    assert_eq!((w.start.as_str(), w.end.as_str()), ("07:00", "07:20"));
    assert_eq!(steady[0].id.len(), 16);
    // the id depends on the entity, the state and the day type
    let other = pattern_id(
        PatternKind::TimeOfDay,
        &steady[0].entities,
        DayType::Weekday,
        0,
    );
    assert_ne!(other, steady[0].id);
    let mut entities = steady[0].entities.clone();
    entities[0].state = "off".into();
    assert_ne!(
        pattern_id(PatternKind::TimeOfDay, &entities, DayType::All, 0),
        steady[0].id
    );
    // and never changes between versions: a fixed hash of a fixed text
    assert_eq!(
        pattern_id(PatternKind::TimeOfDay, &steady[0].entities, DayType::All, 0),
        steady[0].id
    );
}

#[test]
fn morning_and_evening_habits_of_one_light_are_two_patterns() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 4, 30));
    let mut h = primed(&["light.kitchen"], end - Duration::days(31));
    let mut rng = StdRng::seed_from_u64(8);
    for d in 0..30 {
        let day = first + Duration::days(d);
        for hour in [7, 19] {
            let t = at(tz, day, hour, 0, 0) + Duration::seconds(rng.random_range(-600..=600));
            h.pulse("light.kitchen", t, USER, 45);
        }
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let mut centres: Vec<String> = patterns
        .iter()
        .filter_map(|p| p.time_window.as_ref().map(|w| w.centre.clone()))
        .collect();
    centres.sort();
    assert_eq!(centres.len(), 2, "{}", describe(&patterns));
    assert!(circle(&centres[0], "07:00") <= 3 && circle(&centres[1], "19:00") <= 3);
    assert_ne!(patterns[0].id, patterns[1].id);
}

#[test]
fn patterns_serialise_with_snake_case_names() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 4, 30));
    let mut h = primed(&["light.kitchen"], end - Duration::days(31));
    for d in 0..30 {
        h.pulse(
            "light.kitchen",
            at(tz, first + Duration::days(d), 7, 0, 0),
            USER,
            45,
        );
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let json = serde_json::to_value(&patterns).expect("json");
    assert_eq!(json[0]["kind"], "time_of_day");
    assert_eq!(json[0]["day_type"], "all");
    assert_eq!(json[0]["time_window"]["centre"], "07:00");
    assert_eq!(json[0]["evidence"][0]["local_time"], "07:00:00");
    let back: Vec<Pattern> = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, patterns);
}

/// A `/proc/self/status` value in kB (0 where there is none).
fn status_kb(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim_start_matches(':').trim().strip_suffix("kB"))
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// ~2 million changes of a ~2,000-entity home over 30 days: the time and memory the analysis
/// takes (printed, not asserted: `cargo nextest run --lib large_home --no-capture`), and that
/// planted habits are still found among the noise.
#[test]
fn a_large_home_month_streams_in_bounded_memory() {
    let tz = amsterdam();
    let end = at(tz, date(2026, 5, 1), 3, 0, 0);
    let start = end - Duration::days(30);
    let mut rng = StdRng::seed_from_u64(9);
    // changes a day: 1,200 sensors (numbers), 300 motion/door sensors, 400 lights and
    // switches, 100 media players: ~67,000 a day, 2 million in 30 days
    let mut entities: Vec<(String, f64)> = Vec::new();
    for i in 0..1_200 {
        entities.push((format!("sensor.s{i}"), 45.0));
    }
    for i in 0..300 {
        entities.push((format!("binary_sensor.b{i}"), 30.0));
    }
    for i in 0..400 {
        entities.push((
            format!("{}.l{i}", if i % 2 == 0 { "light" } else { "switch" }),
            8.0,
        ));
    }
    for i in 0..100 {
        entities.push((format!("media_player.m{i}"), 5.0));
    }
    let per_day: f64 = entities.iter().map(|(_, r)| r).sum::<f64>();
    let total = (per_day * 30.0) as usize;
    let resident_before = status_kb("VmRSS");
    let mut a = Analyzer::new(Params::new(&AnalysisSettings::default(), tz, end));
    let mut last: Vec<bool> = vec![false; entities.len()];
    let l0 = entities
        .iter()
        .position(|(e, _)| e == "light.l0")
        .expect("light.l0");
    let mut value = String::new();
    let began = std::time::Instant::now();
    let step = 30.0 * 86_400.0 / total as f64;
    let mut planted = 0;
    let mut analysing = std::time::Duration::ZERO;
    let mut door_queue: Vec<(DateTime<Utc>, &str, &str)> = Vec::new();
    for n in 0..total {
        let t = start + Duration::milliseconds((n as f64 * step * 1000.0) as i64);
        // a planted habit: light.l0 on at 07:00 every day (its own random changes continue)
        if planted < 30 && t >= at(tz, date(2026, 4, 1), 7, 0, 0) + Duration::days(planted) {
            let before = t - Duration::seconds(1);
            a.push(Change {
                entity_id: "light.l0",
                state: "off",
                time: before,
                origin: USER,
            });
            a.push(Change {
                entity_id: "light.l0",
                state: "on",
                time: t,
                origin: USER,
            });
            last[l0] = true;
            planted += 1;
        }
        // a planted sequence: the front door opens 4 times a day at random, the hall light
        // follows 40-80 s later by hand
        if rng.random_bool(120.0 / total as f64) {
            let push = |a: &mut Analyzer, e: &str, s: &str, at: DateTime<Utc>| {
                let began = std::time::Instant::now();
                a.push(Change {
                    entity_id: e,
                    state: s,
                    time: at,
                    origin: USER,
                });
                began.elapsed()
            };
            analysing += push(&mut a, "binary_sensor.front_door", "on", t);
            door_queue.push((
                t + Duration::seconds(rng.random_range(40..=80)),
                "light.hall",
                "on",
            ));
            door_queue.push((
                t + Duration::seconds(100),
                "binary_sensor.front_door",
                "off",
            ));
            door_queue.push((t + Duration::seconds(400), "light.hall", "off"));
        }
        door_queue.sort_by_key(|q| std::cmp::Reverse(q.0));
        while door_queue.last().is_some_and(|q| q.0 <= t) {
            if let Some((at, e, s)) = door_queue.pop() {
                let began = std::time::Instant::now();
                a.push(Change {
                    entity_id: e,
                    state: s,
                    time: at,
                    origin: USER,
                });
                analysing += began.elapsed();
            }
        }
        // rate-weighted choice: sensors change most
        let i = loop {
            let i = rng.random_range(0..entities.len());
            if rng.random_bool((entities[i].1 / 45.0).min(1.0)) {
                break i;
            }
        };
        let (entity, _) = &entities[i];
        let state = if entity.starts_with("sensor.") {
            value.clear();
            use std::fmt::Write;
            let _ = write!(value, "{:.1}", rng.random_range(0.0..100.0));
            value.as_str()
        } else {
            last[i] = !last[i];
            if last[i] { "on" } else { "off" }
        };
        let origin = if rng.random_bool(0.2) {
            OriginKind::Automation
        } else {
            USER
        };
        let pushing = std::time::Instant::now();
        a.push(Change {
            entity_id: entity,
            state,
            time: t,
            origin,
        });
        analysing += pushing.elapsed();
    }
    let generated = began.elapsed();
    let memory = a.memory_bytes();
    let finishing = std::time::Instant::now();
    let (patterns, stats) = a.finish();
    let finished = finishing.elapsed();
    let took = analysing + finished;
    // the process's peak resident memory (nextest runs each test in a process of its own)
    let peak = status_kb("VmHWM");
    eprintln!(
        "large home: {} changes ({} transitions, {} automated) of {} entities analysed in \
         {:.2?} (push {:.2?}, finish {:.2?}; generating them took {:.2?} more); analysis memory \
         ~{:.1} MB (process resident {:.1} MB before, peak {:.1} MB); {} patterns; {} pairs \
         pruned\n{}",
        stats.changes,
        stats.transitions,
        stats.automated,
        entities.len(),
        took,
        analysing,
        finished,
        generated.saturating_sub(analysing),
        memory as f64 / 1e6,
        resident_before as f64 / 1e3,
        peak as f64 / 1e3,
        patterns.len(),
        stats.pairs_pruned,
        describe(&patterns),
    );
    assert!(stats.changes >= 1_500_000, "{stats:?}");
    assert!(memory < 64_000_000, "{memory} bytes");
    assert!(
        patterns.iter().any(|p| p.kind == PatternKind::CoOccurrence
            && p.entities[0].entity_id == "binary_sensor.front_door"
            && p.entities[1].entity_id == "light.hall"),
        "the planted sequence survives the pruning: {}",
        describe(&patterns)
    );
    assert!(
        patterns
            .iter()
            .any(|p| p.entities[0].entity_id == "light.l0"
                && p.time_window
                    .as_ref()
                    .is_some_and(|w| circle(&w.centre, "07:00") <= 2)),
        "{}",
        describe(&patterns)
    );
}

#[test]
fn transitions_are_changes_of_state_between_present_discrete_states() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 6, 30));
    let start = end - Duration::days(30);
    let mut a = Analyzer::new(Params::new(&AnalysisSettings::default(), tz, end));
    let t0 = at(tz, first, 12, 0, 0);
    let mut minute = 0;
    let mut push = |a: &mut Analyzer, entity: &str, state: &str, origin: OriginKind| {
        minute += 1;
        a.push(Change {
            entity_id: entity,
            state,
            time: t0 + Duration::minutes(minute),
            origin,
        });
    };
    // before the window: only the last state
    a.push(Change {
        entity_id: "light.a",
        state: "off",
        time: start - Duration::hours(1),
        origin: USER,
    });
    push(&mut a, "light.a", "on", USER); // 1: off → on across the window's start
    push(&mut a, "light.a", "on", USER); // attributes only
    push(&mut a, "light.a", "off", USER); // 2
    push(&mut a, "light.a", "unavailable", OriginKind::Device);
    push(&mut a, "light.a", "on", OriginKind::Device); // from unavailable: none
    push(&mut a, "light.a", "off", OriginKind::Automation); // 3, automated
    push(&mut a, "light.b", "on", USER); // first state seen: none
    push(&mut a, "light.b", "off", USER); // 4
    push(&mut a, "sensor.power", "12.5", USER);
    push(&mut a, "sensor.power", "13.0", USER); // a sensor: never
    push(&mut a, "sun.sun", "below_horizon", OriginKind::Device);
    push(&mut a, "sun.sun", "above_horizon", OriginKind::Device); // not an actionable domain
    push(&mut a, "cover.garage", "closed", USER);
    push(&mut a, "cover.garage", "opening", USER); // on the way
    push(&mut a, "cover.garage", "open", USER); // 5: closed → open
    push(&mut a, "input_select.mode", "3", USER); // a number
    push(&mut a, "input_select.mode", "away", USER); // first discrete state: none
    push(&mut a, "scene.movie", "2026-06-01T20:00:00+00:00", USER);
    push(&mut a, "scene.movie", "2026-06-01T21:00:00+00:00", USER); // 6: activated
    push(&mut a, "binary_sensor.door", "off", OriginKind::Device);
    push(&mut a, "binary_sensor.door", "on", OriginKind::Device); // 7: a trigger only
    a.push(Change {
        entity_id: "light.b",
        state: "on",
        time: end,
        origin: USER,
    }); // at the window's end: outside
    a.push(Change {
        entity_id: "light.b",
        state: "on",
        time: t0,
        origin: USER,
    }); // 8: older than the change before it, counted and still used
    let stats = a.stats().clone();
    assert_eq!(stats.transitions, 8, "{stats:?}");
    assert_eq!(stats.automated, 1);
    assert_eq!(stats.out_of_order, 1);
    let habit = |a: &Analyzer, entity: &str, state: &str| {
        let e = a.entities.get(entity).expect("entity");
        let s = a.states.get(state).expect("state");
        a.time_of_day.occurrences(key(e, s)).len()
    };
    assert_eq!(habit(&a, "light.a", "on"), 1);
    assert_eq!(habit(&a, "light.a", "off"), 1, "the automation's is none");
    assert_eq!(habit(&a, "light.b", "off"), 1);
    assert_eq!(habit(&a, "cover.garage", "open"), 1);
    assert_eq!(habit(&a, "scene.movie", "activated"), 1);
    assert_eq!(
        habit(&a, "binary_sensor.door", "on"),
        0,
        "a trigger, not a habit"
    );
}

#[test]
fn planted_habits_among_noise_are_found_and_nothing_else() {
    let tz: Tz = "America/New_York".parse().expect("tz");
    // the window spans the change to daylight-saving time (2026-03-08)
    let (end, first) = window(tz, date(2026, 3, 25));
    let start = end - Duration::days(30);
    // (entity, hour, minute, day type, probability)
    let habits = [
        ("light.kitchen", 6, 40, DayType::Weekday, 0.9),
        ("light.kitchen", 19, 15, DayType::All, 0.85),
        ("switch.coffee", 7, 5, DayType::Weekday, 0.95),
        ("media_player.living", 20, 30, DayType::All, 0.8),
        ("light.bedroom", 23, 50, DayType::All, 0.9),
        ("fan.office", 9, 0, DayType::Weekday, 0.95),
        ("light.garden", 10, 30, DayType::Weekend, 1.0),
        ("switch.sprinkler", 5, 45, DayType::All, 0.95),
        ("input_boolean.guest", 18, 0, DayType::All, 0.9),
        ("light.porch", 21, 45, DayType::All, 0.85),
    ];
    let mut entities: Vec<String> = habits.iter().map(|h| h.0.to_owned()).collect();
    entities.sort();
    entities.dedup();
    let refs: Vec<&str> = entities.iter().map(String::as_str).collect();
    // HABIT_SEEDS=20 tries more homes
    let seeds: u64 = std::env::var("HABIT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for seed in 0..seeds {
        let mut h = primed(&refs, start);
        let mut rng = StdRng::seed_from_u64(10 + seed);
        for d in 0..30 {
            let day = first + Duration::days(d);
            use chrono::Datelike;
            let weekend = day.weekday().number_from_monday() > 5;
            for (entity, hour, minute, day_type, probability) in habits {
                if day_type.includes(weekend) && rng.random_bool(probability) {
                    // about normal, σ = 12 min: the sum of three uniforms of ±12 min
                    let jitter: i64 = (0..3).map(|_| rng.random_range(-720..=720)).sum();
                    let t = at(tz, day, hour, minute, 0) + Duration::seconds(jitter);
                    let length = Duration::minutes(rng.random_range(5..60));
                    h.pulse_for(entity, t, USER, length);
                }
            }
            // and each entity is also used twice a day at random
            for entity in &entities {
                for _ in 0..2 {
                    let t = at(tz, day, 0, 0, 0) + Duration::seconds(rng.random_range(0..86_400));
                    let length = Duration::minutes(rng.random_range(5..60));
                    h.pulse_for(entity, t, USER, length);
                }
            }
        }
        let patterns = h.run(&AnalysisSettings::default(), tz, end);
        let matched = |p: &Pattern| {
            habits.iter().any(|(entity, hour, minute, day_type, _)| {
                p.entities[0].entity_id == *entity
                    && p.entities[0].state == "on"
                    && p.day_type == *day_type
                    && p.time_window
                        .as_ref()
                        .is_some_and(|w| circle(&w.centre, &format!("{hour:02}:{minute:02}")) <= 15)
            })
        };
        let found = habits
            .iter()
            .filter(|(entity, hour, minute, day_type, _)| {
                patterns.iter().any(|p| {
                    p.entities[0].entity_id == *entity
                        && p.day_type == *day_type
                        && p.time_window.as_ref().is_some_and(|w| {
                            circle(&w.centre, &format!("{hour:02}:{minute:02}")) <= 15
                        })
                })
            })
            .count();
        assert!(
            found >= 9,
            "seed {seed}: {found} of 10 found:\n{}",
            describe(&patterns)
        );
        // `off` 5-60 min after a habit's `on` is a regularity of this history too; every `on`
        // pattern must be a planted habit
        let unmatched: Vec<Pattern> = patterns
            .iter()
            .filter(|p| p.entities[0].state == "on" && !matched(p))
            .cloned()
            .collect();
        assert!(
            unmatched.is_empty(),
            "seed {seed}: {}",
            describe(&unmatched)
        );
    }
}

#[test]
fn a_sequence_whose_delay_varies_widely_or_that_is_one_action_is_not_reported() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 10, 15));
    let run = |delays: std::ops::RangeInclusive<i64>| {
        let mut h = primed(
            &["binary_sensor.back_door", "light.utility"],
            end - Duration::days(31),
        );
        let mut rng = StdRng::seed_from_u64(11);
        for d in 0..30 {
            let day = first + Duration::days(d);
            for slot in 0..4 {
                let t = at(tz, day, 8 + slot * 3, rng.random_range(0..120), 0);
                let open = Duration::seconds(rng.random_range(20..120));
                h.pulse_for("binary_sensor.back_door", t, OriginKind::Device, open);
                let delay = Duration::seconds(rng.random_range(delays.clone()));
                let on = Duration::seconds(rng.random_range(400..900));
                h.pulse_for("light.utility", t + delay, USER, on);
            }
        }
        of_kind(
            &h.run(&AnalysisSettings::default(), tz, end),
            PatternKind::CoOccurrence,
        )
        .iter()
        .map(|p| p.delay.clone().map(|d| d.median_seconds))
        .collect::<Vec<_>>()
    };
    // 20-40 s: a sequence
    let found = run(20..=40);
    assert_eq!(found.len(), 1, "{found:?}");
    // anywhere in the 5 minutes: the light does follow, but not because of the door
    assert!(run(0..=299).is_empty());
    // within a second: one action changing both
    assert!(run(0..=1).is_empty());
}

/// `entity` flips between `playing` and `idle` every few minutes from 19:00 to 22:30 every
/// evening (by hand), as a speaker people use all evening.
fn busy_evenings(h: &mut History, entity: &str, tz: Tz, first: NaiveDate, rng: &mut StdRng) {
    for d in 0..30 {
        let day = first + Duration::days(d);
        let mut t = at(tz, day, 19, rng.random_range(0..10), 0);
        let stop = at(tz, day, 22, 30, 0);
        while t < stop {
            h.set(entity, "playing", t, USER);
            t += Duration::seconds(rng.random_range(120..900));
            h.set(entity, "idle", t, USER);
            t += Duration::seconds(rng.random_range(120..900));
        }
    }
}

#[test]
fn an_entity_busy_every_evening_has_no_evening_habit_but_a_morning_one_is_found() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 5, 20));
    let mut h = primed(
        &["media_player.living_room", "light.bedroom"],
        end - Duration::days(31),
    );
    let mut rng = StdRng::seed_from_u64(21);
    busy_evenings(&mut h, "media_player.living_room", tz, first, &mut rng);
    // and a real habit: the bedroom light at 07:00 every morning
    for d in 0..30 {
        let day = first + Duration::days(d);
        let t = at(tz, day, 7, 0, 0) + Duration::seconds(rng.random_range(-300..=300));
        h.pulse_for("light.bedroom", t, USER, Duration::minutes(20));
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let tod = of_kind(&patterns, PatternKind::TimeOfDay);
    assert!(
        tod.iter()
            .all(|p| p.entities[0].entity_id != "media_player.living_room"),
        "{}",
        describe(&patterns)
    );
    let morning: Vec<_> = tod
        .iter()
        .filter(|p| p.entities[0].entity_id == "light.bedroom" && p.entities[0].state == "on")
        .collect();
    assert_eq!(morning.len(), 1, "{}", describe(&patterns));
    let w = morning[0].time_window.as_ref().expect("window");
    assert!(circle(&w.centre, "07:00") <= 3, "{}", describe(&patterns));
    assert!(morning[0].confidence >= 0.9, "{}", describe(&patterns));
}

#[test]
fn two_busy_entities_active_in_the_same_hours_are_no_sequence_but_door_then_light_is() {
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 5, 20));
    let start = end - Duration::days(30);
    let mut h = primed(
        &[
            "switch.plug_a",
            "switch.plug_b",
            "binary_sensor.front_door",
            "light.hallway",
        ],
        start - Duration::days(1),
    );
    let mut rng = StdRng::seed_from_u64(22);
    for d in 0..30 {
        let day = first + Duration::days(d);
        // two plugs toggled independently about every minute and a half from 17:00 to 23:00:
        // each follows the other within the window almost always (and soon: a tight delay),
        // which beats the month's base rate four times over
        for plug in ["switch.plug_a", "switch.plug_b"] {
            let mut t = at(tz, day, 17, rng.random_range(0..30), 0);
            let stop = at(tz, day, 23, 0, 0);
            while t < stop {
                let on = Duration::seconds(rng.random_range(20..60));
                h.pulse_for(plug, t, USER, on);
                t += on + Duration::seconds(rng.random_range(20..80));
            }
        }
        // the door opens four times a day; the hall light follows within 20-90 s
        h.door_then_hall_light(tz, day, [8, 12, 16, 20], &mut rng);
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let co = of_kind(&patterns, PatternKind::CoOccurrence);
    assert!(
        co.iter().all(|p| p
            .entities
            .iter()
            .all(|e| !e.entity_id.starts_with("switch.plug"))),
        "{}",
        describe(&patterns)
    );
    assert!(door_then_hall_light(&co), "{}", describe(&patterns));
}

#[test]
fn what_a_common_cause_starts_is_no_sequence_of_its_other_consequence() {
    // someone comes home between 15:00 and 19:00: a plug goes on at once, and a second plug is
    // switched every few minutes for the next hour (quiet before). The second follows the first
    // within two minutes every time, but as often follows the moments 20 and 40 minutes later:
    // the home's state brings it, not the first plug. The hours around the arrival taken
    // together (quiet before, busy after) made it look like a sequence.
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 9, 20));
    let start = end - Duration::days(30);
    let mut h = primed(
        &[
            "switch.arrival_plug",
            "switch.busy_plug",
            "binary_sensor.front_door",
            "light.hallway",
        ],
        start - Duration::days(1),
    );
    let mut rng = StdRng::seed_from_u64(31);
    for d in 0..30 {
        let day = first + Duration::days(d);
        let arrival = at(
            tz,
            day,
            rng.random_range(15..19),
            rng.random_range(0..60),
            0,
        );
        let home_until = at(tz, day, 23, 0, 0);
        h.pulse_for("switch.arrival_plug", arrival, USER, home_until - arrival);
        let mut t = arrival + Duration::seconds(rng.random_range(60..=150));
        while t < arrival + Duration::minutes(60) {
            let on = Duration::seconds(rng.random_range(60..180));
            h.pulse_for("switch.busy_plug", t, USER, on);
            t += on + Duration::seconds(rng.random_range(120..240));
        }
        // the door opens four times a day; the hall light follows within 20-90 s
        h.door_then_hall_light(tz, day, [8, 12, 16, 20], &mut rng);
    }
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let co = of_kind(&patterns, PatternKind::CoOccurrence);
    assert!(
        co.iter()
            .all(|p| p.entities[1].entity_id != "switch.busy_plug"),
        "{}",
        describe(&patterns)
    );
    assert!(door_then_hall_light(&co), "{}", describe(&patterns));
}

#[test]
fn an_entity_switched_dozens_of_times_a_day_is_no_sequence_of_a_daily_one() {
    // a plug switched about 25 times a day from 07:00 to 23:00, and once a day within a minute
    // and a half after the kettle: the kettle precedes under 5 % of the plug's uses (it beats
    // every baseline, but the plug happens almost always without it); the hall light that
    // mostly follows the door is a sequence
    let tz = amsterdam();
    let (end, first) = window(tz, date(2026, 3, 10));
    let start = end - Duration::days(30);
    let mut h = primed(
        &[
            "switch.kettle",
            "switch.busy_plug",
            "binary_sensor.front_door",
            "light.hallway",
        ],
        start - Duration::days(1),
    );
    let mut rng = StdRng::seed_from_u64(32);
    let mut busy = 0u32;
    for d in 0..30 {
        let day = first + Duration::days(d);
        let mut t = at(tz, day, 7, rng.random_range(0..30), 0);
        let stop = at(tz, day, 23, 0, 0);
        while t < stop {
            let on = Duration::seconds(rng.random_range(60..300));
            h.pulse_for("switch.busy_plug", t, USER, on);
            busy += 1;
            t += on + Duration::seconds(rng.random_range(1_200..2_400));
        }
        let kettle = at(tz, day, rng.random_range(7..22), rng.random_range(0..60), 0);
        h.pulse_for("switch.kettle", kettle, USER, Duration::minutes(3));
        if rng.random_bool(0.9) {
            let delay = Duration::seconds(rng.random_range(30..=90));
            h.pulse_for(
                "switch.busy_plug",
                kettle + delay,
                USER,
                Duration::minutes(2),
            );
            busy += 1;
        }
        h.door_then_hall_light(tz, day, [8, 16], &mut rng);
    }
    assert!(busy > 600, "{busy} uses of the busy plug");
    let patterns = h.run(&AnalysisSettings::default(), tz, end);
    let co = of_kind(&patterns, PatternKind::CoOccurrence);
    assert!(
        co.iter()
            .all(|p| p.entities[1].entity_id != "switch.busy_plug"),
        "{}",
        describe(&patterns)
    );
    assert!(door_then_hall_light(&co), "{}", describe(&patterns));
}

/// Replays changes exported from a recorded home (`ANALYSIS_REPLAY=<file>`: lines of
/// `entity_id<TAB>time_us<TAB>state<TAB>origin code`, oldest first, `ANALYSIS_ZONE` its time
/// zone) through the detectors and prints the time they take: how detector changes are measured
/// on real routines (`cargo nextest run --release --lib replay_recorded --run-ignored all
/// --no-capture`). README, "Benchmarks", explains how to export a recording.
#[test]
#[ignore = "a profiling tool: needs ANALYSIS_REPLAY"]
fn replay_recorded_changes() {
    let Ok(path) = std::env::var("ANALYSIS_REPLAY") else {
        return;
    };
    let tz: Tz = std::env::var("ANALYSIS_ZONE")
        .ok()
        .and_then(|z| z.parse().ok())
        .unwrap_or_else(amsterdam);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rows: Vec<(&str, i64, &str, OriginKind)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (e, t, s, o) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let origin = crate::store::embedded::origin_of_code(o.parse().unwrap_or(-1));
            Some((e, t.parse().ok()?, s, origin))
        })
        .collect();
    let end = rows.last().map_or(0, |r| r.1) + 1;
    let mut a = Analyzer::new(Params::new(
        &AnalysisSettings::default(),
        tz,
        crate::store::history::time_of(end),
    ));
    let began = std::time::Instant::now();
    for (entity_id, t, state, origin) in &rows {
        a.push(Change {
            entity_id,
            state,
            time: crate::store::history::time_of(*t),
            origin: *origin,
        });
    }
    let pushed = began.elapsed();
    let (patterns, stats) = a.finish();
    println!(
        "replay: {} changes in {:.2?} (push {:.2?}); {} patterns; {stats:?}",
        rows.len(),
        began.elapsed(),
        pushed,
        patterns.len()
    );
}
