//! Daily life on the simulated clock, one simulated minute at a time.
//!
//! People wake, leave (weekdays, if they commute; sometimes at weekends), return and sleep at
//! times drawn per day from the seed; doors open when they come and go; motion in an area turns
//! its lights on when it is dark and they go off some minutes after the motion stops; the living
//! room plays media in the evening; thermostats follow occupancy; temperature, humidity,
//! illuminance, power and energy sensors report noisy values; batteries drain slowly.
//!
//! Every decision of a minute comes from a random generator seeded with the seed and the minute's
//! index, so a given simulated minute always behaves the same way for a seed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::home::fxhash;
use super::hub::{Hub, Inner, Origin};

/// Minutes per day.
const DAY: i64 = 1_440;

/// One person's day, in minutes after midnight (UTC, the simulated home's time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
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
    pub fn home(&self, m: i64) -> bool {
        !(self.leave <= m && m < self.back)
    }

    /// Whether the person is awake at minute `m`.
    pub fn awake(&self, m: i64) -> bool {
        self.wake <= m && m < self.sleep
    }
}

/// The plan of person `person` on day `day` (days since the epoch).
pub fn plan_day(seed: u64, person: usize, commutes: bool, day: i64) -> Day {
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

/// Routine state that lives between minutes.
#[derive(Debug, Default)]
pub struct Routine {
    seed: u64,
    motion_until: HashMap<String, i64>,
    light_off_at: HashMap<String, i64>,
    door_close_at: HashMap<String, i64>,
    last_minute: Option<i64>,
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

fn set(inner: &mut Inner, id: &str, state: &str) {
    if inner.state(id).is_some_and(|s| s.state != state) {
        let _ = inner.set_state(id, state, None, false, &Origin::default());
    }
}

fn set_with(inner: &mut Inner, id: &str, state: &str, attrs: &[(&str, Value)]) {
    let Some(current) = inner.state(id) else {
        return;
    };
    let mut a = current.attributes.clone();
    for (k, v) in attrs {
        a.insert((*k).to_owned(), v.clone());
    }
    let _ = inner.set_state(id, state, Some(a), false, &Origin::default());
}

fn number(inner: &Inner, id: &str) -> Option<f64> {
    inner.state(id).and_then(|s| s.state.parse().ok())
}

impl Routine {
    /// A routine for `seed`.
    pub fn new(seed: u64) -> Self {
        Routine {
            seed,
            ..Routine::default()
        }
    }

    /// Runs every simulated minute from the last one run up to `now_us` (at most `max` of them;
    /// older ones are skipped).
    pub fn advance(&mut self, inner: &mut Inner, now_us: i64, max: i64) {
        let now_min = now_us.div_euclid(60_000_000);
        let from = match self.last_minute {
            Some(last) => (last + 1).max(now_min - max + 1),
            None => now_min,
        };
        for minute in from..=now_min {
            self.minute(inner, minute);
        }
        self.last_minute = Some(now_min);
    }

    /// One simulated minute (`minute` = minutes since the epoch).
    pub fn minute(&mut self, inner: &mut Inner, minute: i64) {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (minute as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let day = minute.div_euclid(DAY);
        let m = minute.rem_euclid(DAY);
        let persons = inner.home.persons.clone();
        let roles = inner.home.roles.clone();

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
                set(inner, &p.entity_id, state);
                // the front door opens as they come and go
                if let Some(door) = roles.iter().find_map(|r| r.door.clone()) {
                    set(inner, &door, "on");
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
            set(inner, &door, "off");
        }

        let dark = daylight(m) < 0.25;
        for (ri, role) in roles.iter().enumerate() {
            // motion
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
                    set(inner, motion, "on");
                    self.motion_until
                        .insert(motion.clone(), minute + rng.random_range(2..6));
                    if dark && home_awake > 0 {
                        let brightness = if !(360..1_320).contains(&m) { 60 } else { 200 };
                        for light in &role.lights {
                            if inner.state(light).is_some_and(|s| s.state != "on") {
                                set_with(
                                    inner,
                                    light,
                                    "on",
                                    &[
                                        ("brightness", json!(brightness)),
                                        ("color_mode", json!("brightness")),
                                    ],
                                );
                            }
                            self.light_off_at
                                .insert(light.clone(), minute + rng.random_range(8..20));
                        }
                    }
                } else if self.motion_until.get(motion).is_some_and(|u| *u <= minute) {
                    self.motion_until.remove(motion);
                    set(inner, motion, "off");
                }
            }
            for light in &role.lights {
                let off = self.light_off_at.get(light).is_some_and(|t| *t <= minute)
                    || (home_awake == 0 && inner.state(light).is_some_and(|s| s.state == "on"));
                if off {
                    self.light_off_at.remove(light);
                    if inner.state(light).is_some_and(|s| s.state == "on") {
                        set_with(
                            inner,
                            light,
                            "off",
                            &[("brightness", Value::Null), ("color_mode", Value::Null)],
                        );
                    }
                }
            }
            // media in the evening (and weekend afternoons)
            for media in &role.media {
                let weekend = DateTime::<Utc>::from_timestamp(minute * 60, 0)
                    .is_some_and(|t| matches!(t.weekday(), Weekday::Sat | Weekday::Sun));
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
                    set_with(inner, media, want, &[("media_title", t)]);
                }
            }
            // thermostats every 5 minutes
            if let Some(climate) = &role.climate
                && (minute + fxhash(climate) as i64).rem_euclid(5) == 0
            {
                let target = if home_awake > 0 { 21.0 } else { 18.0 };
                let current = inner
                    .state(climate)
                    .and_then(|s| s.attributes.get("current_temperature"))
                    .and_then(Value::as_f64)
                    .unwrap_or(20.0);
                let heating = current < target - 0.3;
                let next = current + if heating { 0.2 } else { -0.1 } + rng.random_range(-0.1..0.1);
                set_with(
                    inner,
                    climate,
                    "heat",
                    &[
                        ("temperature", json!(target)),
                        ("current_temperature", json!((next * 10.0).round() / 10.0)),
                        (
                            "hvac_action",
                            json!(if heating { "heating" } else { "idle" }),
                        ),
                    ],
                );
            }
            // noisy sensors, staggered
            for t in &role.temperature {
                if (minute + fxhash(t) as i64).rem_euclid(5) == 0 {
                    let cur = number(inner, t).unwrap_or(20.0);
                    let pull = (20.5 - cur) * 0.05;
                    let v = cur + pull + rng.random_range(-0.15..0.15);
                    set(inner, t, &format!("{v:.1}"));
                }
            }
            for h in &role.humidity {
                if (minute + fxhash(h) as i64).rem_euclid(10) == 0 {
                    let cur = number(inner, h).unwrap_or(45.0);
                    let v =
                        (cur + (46.0 - cur) * 0.05 + rng.random_range(-0.8..0.8)).clamp(20.0, 95.0);
                    set(inner, h, &format!("{v:.1}"));
                }
            }
            if let Some(lux) = &role.illuminance
                && (minute + fxhash(lux) as i64).rem_euclid(5) == 0
            {
                let lights_on = role
                    .lights
                    .iter()
                    .filter(|l| inner.state(l).is_some_and(|s| s.state == "on"))
                    .count() as f64;
                let v = daylight(m) * 450.0 + lights_on * 60.0 + rng.random_range(0.0..5.0);
                set(inner, lux, &format!("{}", v.round() as i64));
            }
            for b in &role.batteries {
                if rng.random_bool(1.0 / 2_880.0) {
                    let v = number(inner, b).unwrap_or(100.0);
                    let next = if v <= 5.0 { 100.0 } else { v - 1.0 };
                    set(inner, b, &format!("{}", next as i64));
                }
            }
            // plugs: kitchen at breakfast and dinner, office on weekday working hours
            for (k, (switch, power, energy)) in role.plugs.iter().enumerate() {
                let key = (ri * 31 + k) as i64;
                let active = home_awake > 0
                    && match key % 3 {
                        0 => (420..450).contains(&m) || (1_080..1_140).contains(&m),
                        1 => (540..1_020).contains(&m),
                        _ => rng.random_bool(0.3),
                    };
                let on = if active { "on" } else { "off" };
                if inner.state(switch).is_some_and(|s| s.state != on) && rng.random_bool(0.5) {
                    set(inner, switch, on);
                }
                let is_on = inner.state(switch).is_some_and(|s| s.state == "on");
                let watts = if is_on {
                    60.0 + (key % 7) as f64 * 180.0 + rng.random_range(-15.0..15.0)
                } else {
                    0.3 + rng.random_range(0.0..1.2)
                };
                set(inner, power, &format!("{watts:.1}"));
                if minute.rem_euclid(5) == 0 {
                    let kwh = number(inner, energy).unwrap_or(0.0) + watts * 5.0 / 60_000.0;
                    set(inner, energy, &format!("{kwh:.3}"));
                }
            }
        }
        let _ = home_any;
        // the whole house
        if let Some((power, energy)) = inner.home.meter.clone() {
            let lights_on = inner
                .home
                .states
                .iter()
                .filter(|s| s.domain() == "light" && s.state == "on")
                .count() as f64;
            let watts =
                140.0 + lights_on * 8.0 + home_awake as f64 * 90.0 + rng.random_range(-20.0..20.0);
            set(inner, &power, &format!("{watts:.1}"));
            if minute.rem_euclid(5) == 0 {
                let kwh = number(inner, &energy).unwrap_or(0.0) + watts * 5.0 / 60_000.0;
                set(inner, &energy, &format!("{kwh:.3}"));
            }
        }
    }
}

/// Drives the routine from the hub's clock until cancelled.
pub async fn run(hub: Arc<Hub>, seed: u64, speed: f64, cancel: CancellationToken) {
    let mut routine = Routine::new(seed);
    // tick often enough to run about one simulated minute per tick
    let tick = Duration::from_secs_f64((30.0 / speed.max(0.001)).clamp(0.005, 0.25));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = cancel.cancelled() => return,
        }
        hub.with(|inner| {
            let now = inner.clock().now();
            // a stalled process catches up at most a simulated day at once
            routine.advance(inner, now, DAY);
        });
    }
}

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
        let start = 20_094 * DAY;
        for minute in start..start + DAY {
            hub.with(|inner| routine.minute(inner, minute));
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
    }
}
