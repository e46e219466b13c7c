//! The planted truth: what the simulated home's people and automations do, for pattern detection
//! to be measured against (`GET /api/simulator/routines`).
//!
//! Generated from the home and the seed (the same for a seed and profile), and driven by the
//! routine ([`super::routine`]) in the home's local time zone:
//! - **habits** ([`Habit`]): a person (the owner or another real user) brings an entity to a
//!   state around a local time (± a jitter, uniform), on a day type, with a probability per
//!   eligible day. They come in pairs on one entity (on, then back off later; the front door's
//!   lock has a weekday and a weekend unlock): the second habit is a transition only when the
//!   first happened, so its probability is the product; when it does not happen the person
//!   reverts the entity 2–5.5 h later (a wide, unplanned spread). Each habit entity is left alone
//!   by the rest of the routine.
//! - **sequences** ([`Sequence`]): after a trigger entity reaches a state, the person brings a
//!   target entity to a state after a delay (uniform in a range of seconds), with a probability
//!   per trigger; the target goes back some minutes later.
//! - **automations** ([`PlantedAutomation`]), run as Home Assistant runs them: every area with
//!   motion and lights has "motion → lights on" and "no motion → lights off" (state triggers: the
//!   run's context has the trigger state's context as parent), and some time-triggered ones run at
//!   a fixed local time (no parent, no user). Each exists as an `automation.*` entity with an
//!   `id`. Their regularity is not a habit.
//! - **system changes** ([`SystemChange`]): the Node-RED add-on (a system-generated user) switches
//!   something at a fixed time: origin `system`, not a habit either.
//! - **scripts** ([`PlantedScript`]): the owner runs "Movie time" on some evenings at a random
//!   time; it runs in the owner's context, announced by `script_started`.
//! - **regularities** ([`Regularity`]): what the physical routine produces that a detector may
//!   legitimately find (people leave and come back, the front door opens as they do, media in the
//!   evening, kitchen plugs at meals, targets that follow a habit), so an evaluation does not count
//!   them as false positives.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::home::{Home, slug};

/// Minutes per day.
const DAY: i64 = 1_440;

/// On which days something happens, by the home's local calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Whether local day `day` (days since the local epoch, a Thursday) is one.
    pub(crate) fn matches(self, day: i64) -> bool {
        let weekend = is_weekend(day);
        match self {
            DayType::All => true,
            DayType::Weekday => !weekend,
            DayType::Weekend => weekend,
        }
    }
}

/// Whether local day `day` (days since 1970-01-01, a Thursday) is a Saturday or Sunday.
pub(crate) fn is_weekend(day: i64) -> bool {
    // 0 = Monday
    (day + 3).rem_euclid(7) >= 5
}

/// The kind of a habit (the patterns API's `time_of_day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HabitKind {
    /// An entity reaches a state around a local time.
    TimeOfDay,
}

/// The kind of a sequence (the patterns API's `co_occurrence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceKind {
    /// B reaches a state within a delay after A reaches one.
    CoOccurrence,
}

/// An entity reaching a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityState {
    /// The entity.
    pub entity_id: String,
    /// The state it reaches.
    pub state: String,
}

impl EntityState {
    fn new(entity_id: &str, state: &str) -> Self {
        EntityState {
            entity_id: entity_id.to_owned(),
            state: state.to_owned(),
        }
    }
}

/// A range of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delay {
    /// At least.
    pub min: u32,
    /// At most.
    pub max: u32,
}

/// A planted time-of-day habit: a person brings `entity_id` to `state` around `local_time`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Habit {
    /// Always `time_of_day`.
    pub kind: HabitKind,
    /// The entity.
    pub entity_id: String,
    /// The state it reaches.
    pub state: String,
    /// Local time, `HH:MM`.
    pub local_time: String,
    /// Each occurrence lands uniformly within ± this many minutes (across midnight too).
    pub jitter_minutes: u32,
    /// On which days.
    pub day_type: DayType,
    /// Probability that the transition happens on an eligible day.
    pub probability: f64,
    /// The person's user (a real, not system-generated user).
    pub user_id: String,
    /// Minute of the local day (`local_time`).
    #[serde(skip)]
    pub(crate) minute: i64,
    /// Probability that it happens when it can (the entity is in the other state of its pair);
    /// `probability` is this times the chance of that.
    #[serde(skip)]
    pub(crate) p_when_possible: f64,
    /// The state the entity must be in for this to be a transition.
    #[serde(skip)]
    pub(crate) from: String,
    /// It puts the entity back (the second of a pair): when it does not happen, the person puts
    /// it back 2–5.5 h later.
    #[serde(skip)]
    pub(crate) back: bool,
}

/// A planted sequence: after `trigger`, the person brings `target` about within `delay_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    /// Always `co_occurrence`.
    pub kind: SequenceKind,
    /// What triggers it.
    pub trigger: EntityState,
    /// What follows.
    pub target: EntityState,
    /// The delay after the trigger, seconds (uniform).
    pub delay_seconds: Delay,
    /// On which days (those the trigger happens on).
    pub day_type: DayType,
    /// Probability that the target follows a trigger (when it is not already in its state).
    pub probability: f64,
    /// The person's user.
    pub user_id: String,
    /// The target goes back to this state `revert_minutes` after.
    #[serde(skip)]
    pub(crate) rest: String,
    /// Minutes after the target's change that it goes back (uniform).
    #[serde(skip)]
    pub(crate) revert_minutes: (i64, i64),
}

/// What kind of trigger starts an automation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerPlatform {
    /// A state change of an entity.
    State,
    /// A fixed local time.
    Time,
}

/// An automation's trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// The platform.
    pub platform: TriggerPlatform,
    /// The entity (state triggers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entity_id: Option<String>,
    /// The state it changes to (state triggers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state: Option<String>,
    /// Local time `HH:MM` (time triggers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub at: Option<String>,
}

/// What a planted automation does when it runs (the simulated routine decides when).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Motion in an area → its lights on (when dark and someone is awake).
    MotionOn,
    /// Some minutes without motion, or nobody awake → the area's lights off.
    MotionOff,
    /// At a fixed local time.
    AtTime {
        /// Minute of the local day.
        minute: i64,
    },
}

/// A planted automation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlantedAutomation {
    /// Its config id (the `id` attribute of its entity).
    pub id: String,
    /// Its `automation.*` entity.
    pub entity_id: String,
    /// Its name.
    pub alias: String,
    /// What triggers it.
    pub trigger: Trigger,
    /// What it changes (the first of `targets`).
    pub target: EntityState,
    /// Everything it changes.
    pub targets: Vec<EntityState>,
    /// On which days it runs.
    pub day_type: DayType,
    #[serde(skip, default = "default_behaviour")]
    pub(crate) behaviour: Behaviour,
}

fn default_behaviour() -> Behaviour {
    Behaviour::MotionOn
}

/// The kind of a documented regularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegularityKind {
    /// Entities reach states within a local time window.
    TimeOfDay,
    /// One follows another within a delay.
    CoOccurrence,
}

/// A local time window `start`–`end` (`HH:MM`; may wrap past midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalWindow {
    /// From.
    pub start: String,
    /// To.
    pub end: String,
}

/// A physical regularity of the routine a detector may legitimately find.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regularity {
    /// Time of day or co-occurrence.
    pub kind: RegularityKind,
    /// The entities and states involved (for a co-occurrence: the triggers first, the followers
    /// last; any trigger with any follower matches).
    pub entities: Vec<EntityState>,
    /// Where in the local day (time of day).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub local_window: Option<LocalWindow>,
    /// The delay (co-occurrence).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delay_seconds: Option<Delay>,
    /// On which days.
    pub day_type: DayType,
    /// What causes it.
    pub description: String,
}

/// A change a system-generated user (an add-on) makes at a fixed local time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemChange {
    /// The system user.
    pub user_id: String,
    /// The entity.
    pub entity_id: String,
    /// The state it reaches.
    pub state: String,
    /// Local time `HH:MM` (± 1 minute).
    pub local_time: String,
    /// On which days.
    pub day_type: DayType,
    /// What it is.
    pub description: String,
    #[serde(skip)]
    pub(crate) minute: i64,
}

/// A script a person runs now and then (never at a regular time): it runs in the caller's context
/// (their `user_id`), announced by `script_started`, and its changes carry that context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlantedScript {
    /// Its `script.*` entity.
    pub entity_id: String,
    /// Its name.
    pub alias: String,
    /// What it changes.
    pub targets: Vec<EntityState>,
    /// Who runs it.
    pub user_id: String,
    /// Probability that it runs on a day.
    pub probability: f64,
    /// When it may run (uniformly within).
    pub local_window: LocalWindow,
    /// What it is.
    pub description: String,
    /// The window in minutes of the day.
    #[serde(skip)]
    pub(crate) window: (i64, i64),
    /// Its targets go back to this state 1.5–2.5 h later (the person, by hand).
    #[serde(skip)]
    pub(crate) rest: String,
}

/// A credential of a user (`config/auth/list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The auth provider type (`homeassistant`).
    #[serde(rename = "type")]
    pub kind: String,
}

/// A user as `config/auth/list` reports it (Home Assistant 2025.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id (contexts' `user_id`).
    pub id: String,
    /// Login name (people with a password only).
    pub username: Option<String>,
    /// Display name.
    pub name: String,
    /// The owner.
    pub is_owner: bool,
    /// Active.
    pub is_active: bool,
    /// Local access only.
    pub local_only: bool,
    /// Made by Home Assistant for the Supervisor, an add-on or an integration.
    pub system_generated: bool,
    /// `system-admin`, `system-users` or `system-read-only`.
    pub group_ids: Vec<String>,
    /// Its credentials.
    pub credentials: Vec<Credential>,
}

/// Everything planted in a home (`GET /api/simulator/routines`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Routines {
    /// The home's IANA time zone (local times refer to it).
    pub time_zone: String,
    /// Planted habits.
    pub habits: Vec<Habit>,
    /// Planted sequences.
    pub sequences: Vec<Sequence>,
    /// Planted automations (never habits).
    pub automations: Vec<PlantedAutomation>,
    /// Changes by system-generated users (never habits).
    pub system_changes: Vec<SystemChange>,
    /// Scripts people run at irregular times (`script_started`).
    pub scripts: Vec<PlantedScript>,
    /// Documented regularities of the routine (not false positives).
    pub regularities: Vec<Regularity>,
    /// The users (`config/auth/list`).
    pub users: Vec<User>,
}

/// The plan of a home: its [`Routines`] (the time zone set when they are served), plus what the
/// routine needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// What is planted.
    pub truth: Routines,
    /// Entities the physical routine leaves alone (habit, sequence, time-automation and system
    /// targets).
    pub reserved: HashSet<String>,
    /// Per area role: the index of its motion-on and motion-off automations.
    pub motion_automations: Vec<Option<(usize, usize)>>,
}

impl Plan {
    /// The routines in time zone `tz`.
    pub(crate) fn routines(&self, tz: chrono_tz::Tz) -> Routines {
        Routines {
            time_zone: tz.name().to_owned(),
            ..self.truth.clone()
        }
    }

    /// The Home Assistant configuration of planted automation `a` (stored with its entity).
    pub(crate) fn automation_config(a: &PlantedAutomation) -> Value {
        let trigger = match (a.trigger.platform, a.behaviour) {
            (TriggerPlatform::State, Behaviour::MotionOff) => json!({
                "trigger": "state", "entity_id": a.trigger.entity_id, "to": a.trigger.state,
                "for": {"minutes": 5},
            }),
            (TriggerPlatform::State, _) => json!({
                "trigger": "state", "entity_id": a.trigger.entity_id, "to": a.trigger.state,
            }),
            (TriggerPlatform::Time, _) => json!({
                "trigger": "time", "at": format!("{}:00", a.trigger.at.as_deref().unwrap_or("00:00")),
            }),
        };
        let conditions = match (a.behaviour, a.day_type) {
            (Behaviour::MotionOn, _) => json!([
                {"condition": "state", "entity_id": "sun.sun", "state": "below_horizon"},
            ]),
            (_, DayType::Weekday) => {
                json!([{"condition": "time", "weekday": ["mon", "tue", "wed", "thu", "fri"]}])
            }
            (_, DayType::Weekend) => json!([{"condition": "time", "weekday": ["sat", "sun"]}]),
            _ => json!([]),
        };
        let domain = a
            .target
            .entity_id
            .split('.')
            .next()
            .unwrap_or("homeassistant");
        let service = if a.target.state == "off" {
            "turn_off"
        } else {
            "turn_on"
        };
        let ids: Vec<&str> = a.targets.iter().map(|t| t.entity_id.as_str()).collect();
        json!({
            "id": a.id, "alias": a.alias, "description": "planted by the simulator",
            "mode": "single", "triggers": [trigger], "conditions": conditions,
            "actions": [{"action": format!("{domain}.{service}"), "target": {"entity_id": ids}}],
        })
    }
}

/// `HH:MM` of minute `m` of the day.
pub(crate) fn hhmm(m: i64) -> String {
    let m = m.rem_euclid(DAY);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// SplitMix64's finaliser.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A number in [0, 1) from the seed and three keys.
pub(crate) fn unit(seed: u64, a: u64, b: u64, c: u64) -> f64 {
    let bits = mix(seed ^ mix(a ^ mix(b ^ mix(c))));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Which kind of entity a template wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A light the motion automation does not need (not an area's first light, or in an area
    /// without motion).
    Light,
    /// A plug's switch.
    Switch,
    /// A speaker.
    Media,
    /// A thermostat.
    Climate,
    /// The front door lock.
    Lock,
}

impl Want {
    /// (active, rest) states.
    fn states(self) -> (&'static str, &'static str) {
        match self {
            Want::Light | Want::Switch => ("on", "off"),
            Want::Media => ("playing", "idle"),
            Want::Climate => ("off", "heat"),
            Want::Lock => ("locked", "unlocked"),
        }
    }
}

/// One habit of a template: (local minute, jitter, day type, probability when possible).
type Slot = (i64, u32, DayType, f64);

/// A habit pair: the entity goes active at `active`, back to rest at each of `rest`.
struct Template {
    area: &'static str,
    want: Want,
    active: Slot,
    rest: &'static [Slot],
}

const fn at(h: i64, m: i64) -> i64 {
    h * 60 + m
}

/// The habit templates, in the order a home takes them (small homes the first few). No time in
/// 01:00–04:00 (a daylight-saving change skips or repeats an hour there).
const TEMPLATES: [Template; 12] = [
    // near midnight: on at 22:45, off around 23:55 (± 10 min wraps past midnight)
    Template {
        area: "Bedroom",
        want: Want::Light,
        active: (at(22, 45), 8, DayType::All, 0.9),
        rest: &[(at(23, 55), 10, DayType::All, 0.9)],
    },
    // weekday only
    Template {
        area: "Kitchen",
        want: Want::Media,
        active: (at(7, 5), 5, DayType::Weekday, 0.85),
        rest: &[(at(7, 40), 6, DayType::Weekday, 0.9)],
    },
    // weekend only, lower probabilities
    Template {
        area: "Living Room",
        want: Want::Light,
        active: (at(9, 30), 10, DayType::Weekend, 0.65),
        rest: &[(at(12, 0), 15, DayType::Weekend, 0.85)],
    },
    // the lock: every night, unlocked later at weekends
    Template {
        area: "Hallway",
        want: Want::Lock,
        active: (at(22, 15), 10, DayType::All, 0.95),
        rest: &[
            (at(7, 30), 12, DayType::Weekday, 0.9),
            (at(9, 15), 20, DayType::Weekend, 0.85),
        ],
    },
    Template {
        area: "Office",
        want: Want::Switch,
        active: (at(8, 50), 7, DayType::Weekday, 0.8),
        rest: &[(at(17, 40), 12, DayType::Weekday, 0.9)],
    },
    Template {
        area: "Bedroom",
        want: Want::Climate,
        active: (at(23, 25), 10, DayType::All, 0.8),
        rest: &[(at(6, 15), 10, DayType::All, 0.9)],
    },
    Template {
        area: "Kids Room",
        want: Want::Light,
        active: (at(19, 30), 10, DayType::Weekday, 0.85),
        rest: &[(at(20, 15), 10, DayType::Weekday, 0.8)],
    },
    Template {
        area: "Bathroom",
        want: Want::Light,
        active: (at(6, 40), 6, DayType::Weekday, 0.75),
        rest: &[(at(7, 0), 5, DayType::Weekday, 0.9)],
    },
    Template {
        area: "Dining Room",
        want: Want::Light,
        active: (at(18, 45), 10, DayType::All, 0.8),
        rest: &[(at(20, 40), 15, DayType::All, 0.85)],
    },
    Template {
        area: "Garden",
        want: Want::Light,
        active: (at(21, 0), 20, DayType::Weekend, 0.5),
        rest: &[(at(22, 30), 20, DayType::Weekend, 0.8)],
    },
    Template {
        area: "Laundry",
        want: Want::Switch,
        active: (at(10, 30), 30, DayType::Weekend, 0.6),
        rest: &[(at(13, 0), 30, DayType::Weekend, 0.9)],
    },
    Template {
        area: "Guest Room",
        want: Want::Climate,
        active: (at(10, 0), 15, DayType::Weekday, 0.7),
        rest: &[(at(16, 0), 15, DayType::Weekday, 0.8)],
    },
];

/// Entities a plan may still take.
struct Picker<'a> {
    home: &'a Home,
    taken: HashSet<String>,
}

impl Picker<'_> {
    /// Whether `area_id` is (a numbered copy of) the template area `base`.
    fn is_area(area_id: &str, base: &str) -> bool {
        let b = slug(base);
        area_id == b
            || area_id
                .strip_prefix(&b)
                .and_then(|r| r.strip_prefix('_'))
                .is_some_and(|n| n.bytes().all(|c| c.is_ascii_digit()))
    }

    /// The candidates of `want` in role `r`.
    fn candidates(&self, r: usize, want: Want) -> Vec<String> {
        let role = &self.home.roles[r];
        match want {
            Want::Light if role.motion.is_some() => role.lights.iter().skip(1).cloned().collect(),
            Want::Light => role.lights.clone(),
            Want::Switch => role.plugs.iter().map(|(s, _, _)| s.clone()).collect(),
            Want::Media => role.media.clone(),
            Want::Climate => role.climate.iter().cloned().collect(),
            Want::Lock => Vec::new(),
        }
    }

    /// A free entity of `want` in area role `r`.
    fn take_in(&mut self, r: usize, want: Want) -> Option<String> {
        let found = self
            .candidates(r, want)
            .into_iter()
            .find(|e| !self.taken.contains(e))?;
        self.taken.insert(found.clone());
        Some(found)
    }

    /// A free entity of `want`, preferably in an area `base` (the `round`-th such area), else
    /// anywhere when `anywhere`.
    fn take(&mut self, base: &str, round: usize, want: Want, anywhere: bool) -> Option<String> {
        if want == Want::Lock {
            let lock = self.home.lock.clone().filter(|l| !self.taken.contains(l))?;
            self.taken.insert(lock.clone());
            return Some(lock);
        }
        let roles = &self.home.roles;
        let areas: Vec<usize> = (0..roles.len())
            .filter(|&r| Self::is_area(&roles[r].area_id, base))
            .collect();
        let preferred = areas
            .get(round)
            .into_iter()
            .flat_map(|&r| self.candidates(r, want))
            .find(|e| !self.taken.contains(e));
        let found = preferred.or_else(|| {
            if !anywhere {
                return None;
            }
            (0..roles.len())
                .flat_map(|r| self.candidates(r, want))
                .find(|e| !self.taken.contains(e))
        })?;
        self.taken.insert(found.clone());
        Some(found)
    }
}

/// How many habit templates a home of `entities` entities plants.
fn templates_for(entities: usize) -> usize {
    match entities {
        0..=200 => 5,
        201..=1_000 => 8,
        _ => 16,
    }
}

/// A stable 32-hex user id from the seed and a name.
fn user_hex(seed: u64, name: &str) -> String {
    let h = super::home::fxhash(name);
    format!("{:016x}{:016x}", mix(seed ^ h), mix(mix(seed) ^ h))
}

/// The users: every person (the first is the owner), then the system-generated ones.
fn users(seed: u64, home: &Home) -> Vec<User> {
    let mut out: Vec<User> = home
        .persons
        .iter()
        .enumerate()
        .map(|(i, p)| User {
            id: p.user_id.clone(),
            username: Some(slug(&p.name)),
            name: p.name.clone(),
            is_owner: i == 0,
            is_active: true,
            local_only: false,
            system_generated: false,
            group_ids: vec![
                if i < 2 {
                    "system-admin"
                } else {
                    "system-users"
                }
                .to_owned(),
            ],
            credentials: vec![Credential {
                kind: "homeassistant".into(),
            }],
        })
        .collect();
    for (name, group) in [
        ("Supervisor", "system-admin"),
        ("Home Assistant Content", "system-read-only"),
        ("Node-RED", "system-admin"),
    ] {
        out.push(User {
            id: user_hex(seed, name),
            username: None,
            name: name.to_owned(),
            is_owner: false,
            is_active: true,
            local_only: false,
            system_generated: true,
            group_ids: vec![group.to_owned()],
            credentials: Vec::new(),
        });
    }
    out
}

/// The id of the Node-RED add-on's system user.
pub(crate) fn node_red_user(seed: u64) -> String {
    user_hex(seed, "Node-RED")
}

/// The area name of a role (its registry name).
fn area_name(home: &Home, r: usize) -> String {
    let id = &home.roles[r].area_id;
    home.areas
        .iter()
        .find(|a| a["area_id"] == id.as_str())
        .and_then(|a| a["name"].as_str())
        .unwrap_or(id)
        .to_owned()
}

/// Plans what happens in `home` for `seed`.
pub(crate) fn plan(seed: u64, home: &Home) -> Plan {
    let mut picker = Picker {
        home,
        taken: HashSet::new(),
    };
    let mut plan = Plan::default();
    plan.truth.users = users(seed, home);
    let people: Vec<String> = home.persons.iter().map(|p| p.user_id.clone()).collect();
    let person = |k: usize| {
        people
            .get(k % people.len().max(1))
            .cloned()
            .unwrap_or_default()
    };
    // which template entity each habit went to, for the sequences
    let mut habit_entity: Vec<Option<(String, usize)>> = Vec::new();
    let wanted = templates_for(home.states.len());
    for k in 0..wanted {
        let t = &TEMPLATES[k % TEMPLATES.len()];
        let round = k / TEMPLATES.len();
        let Some(entity) = picker.take(t.area, round, t.want, round == 0) else {
            habit_entity.push(None);
            continue;
        };
        // a later round shifts its times, so copies do not co-occur with the first; each seed
        // moves a template by up to 20 minutes (the first stays: it is the one near midnight)
        let by_seed = if k == 0 {
            0
        } else {
            (unit(seed, 0x7135, k as u64, 0) * 41.0) as i64 - 20
        };
        let shift = round as i64 * 23 + by_seed;
        let (active, rest) = t.want.states();
        let user = person(k);
        let first = plan.truth.habits.len();
        let habit =
            |(m, jitter, day_type, p_when_possible): Slot, state: &str, from: &str, p: f64| Habit {
                kind: HabitKind::TimeOfDay,
                entity_id: entity.clone(),
                state: state.into(),
                local_time: hhmm(m + shift),
                jitter_minutes: jitter,
                day_type,
                probability: (p * 1_000.0).round() / 1_000.0,
                user_id: user.clone(),
                minute: (m + shift).rem_euclid(DAY),
                p_when_possible,
                from: from.into(),
                back: from == active,
            };
        let p = t.active.3;
        plan.truth.habits.push(habit(t.active, active, rest, p));
        for &slot in t.rest {
            // a transition only when the first happened
            plan.truth
                .habits
                .push(habit(slot, rest, active, p * slot.3));
        }
        habit_entity.push(Some((entity, first)));
        plan.reserved.extend(picker.taken.iter().cloned());
    }
    plan_sequences(seed, home, &mut picker, &mut plan, &habit_entity, &person);
    plan_time_automations(home, &mut picker, &mut plan);
    plan_script(&mut picker, &mut plan, &person(0));
    plan_system(seed, &mut picker, &mut plan);
    plan.reserved.extend(picker.taken.iter().cloned());
    plan_motion_automations(home, &mut plan);
    plan_regularities(home, &mut plan);
    plan
}

/// Sequences: the front door → a hallway light; habit entities → another entity of the area.
fn plan_sequences(
    _seed: u64,
    home: &Home,
    picker: &mut Picker<'_>,
    plan: &mut Plan,
    habit_entity: &[Option<(String, usize)>],
    person: &dyn Fn(usize) -> String,
) {
    let wanted = match home.states.len() {
        0..=200 => 2,
        201..=1_000 => 4,
        _ => 7,
    };
    // the door that opens as people come and go, and a light in its area (else the hallway's)
    let door = home.roles.iter().position(|r| r.door.is_some());
    let light = door.and_then(|r| picker.take_in(r, Want::Light));
    let light = light.or_else(|| picker.take("Hallway", 0, Want::Light, true));
    if let Some(door) = door.and_then(|r| home.roles[r].door.clone())
        && let Some(light) = light
    {
        plan.truth.sequences.push(Sequence {
            kind: SequenceKind::CoOccurrence,
            trigger: EntityState::new(&door, "on"),
            target: EntityState::new(&light, "on"),
            delay_seconds: Delay { min: 20, max: 90 },
            day_type: DayType::All,
            probability: 0.8,
            user_id: person(0),
            rest: "off".into(),
            revert_minutes: (4, 10),
        });
    }
    // (template index, what follows in the same area, delay, probability)
    let follow: [(usize, Want, Delay, f64); 6] = [
        (0, Want::Media, Delay { min: 60, max: 180 }, 0.7),
        (1, Want::Switch, Delay { min: 30, max: 120 }, 0.75),
        (4, Want::Light, Delay { min: 10, max: 60 }, 0.8),
        (6, Want::Media, Delay { min: 30, max: 90 }, 0.6),
        (8, Want::Media, Delay { min: 60, max: 240 }, 0.75),
        (12, Want::Media, Delay { min: 60, max: 180 }, 0.7),
    ];
    for (k, want, delay, p) in follow {
        if plan.truth.sequences.len() >= wanted {
            break;
        }
        let Some(Some((trigger, first))) = habit_entity.get(k) else {
            continue;
        };
        let t = &TEMPLATES[k % TEMPLATES.len()];
        let round = k / TEMPLATES.len();
        // follow in the same area only (media falls back to the area's light)
        let target = picker
            .take(t.area, round, want, false)
            .or_else(|| picker.take(t.area, round, Want::Light, false));
        let Some(target) = target else {
            continue;
        };
        let habit = &plan.truth.habits[*first];
        let (active, rest) = if target.starts_with("media_player.") {
            ("playing", "idle")
        } else {
            ("on", "off")
        };
        plan.truth.sequences.push(Sequence {
            kind: SequenceKind::CoOccurrence,
            trigger: EntityState::new(trigger, &habit.state),
            target: EntityState::new(&target, active),
            delay_seconds: delay,
            day_type: habit.day_type,
            probability: p,
            user_id: habit.user_id.clone(),
            rest: rest.into(),
            revert_minutes: (15, 40),
        });
    }
}

/// Time-triggered automations: a "coffee" plug on weekday mornings, outdoor lights at night.
fn plan_time_automations(home: &Home, picker: &mut Picker<'_>, plan: &mut Plan) {
    let mut add = |id: &str, alias: &str, entity: &str, state: &str, minute: i64, day: DayType| {
        plan.truth.automations.push(PlantedAutomation {
            id: id.to_owned(),
            entity_id: format!("automation.{}", slug(alias)),
            alias: alias.to_owned(),
            trigger: Trigger {
                platform: TriggerPlatform::Time,
                entity_id: None,
                state: None,
                at: Some(hhmm(minute)),
            },
            target: EntityState::new(entity, state),
            targets: vec![EntityState::new(entity, state)],
            day_type: day,
            behaviour: Behaviour::AtTime { minute },
        });
    };
    if let Some(plug) = picker.take("Kitchen", 0, Want::Switch, true) {
        add(
            "simulated_coffee_on",
            "Coffee machine on",
            &plug,
            "on",
            at(6, 30),
            DayType::Weekday,
        );
        add(
            "simulated_coffee_off",
            "Coffee machine off",
            &plug,
            "off",
            at(8, 0),
            DayType::Weekday,
        );
    }
    if home.states.len() > 200
        && let Some(light) = picker
            .take("Porch", 0, Want::Light, false)
            .or_else(|| picker.take("Garden", 0, Want::Light, true))
    {
        add(
            "simulated_outdoor_on",
            "Outdoor light on",
            &light,
            "on",
            at(19, 50),
            DayType::All,
        );
        add(
            "simulated_outdoor_off",
            "Outdoor light off",
            &light,
            "off",
            at(23, 40),
            DayType::All,
        );
    }
}

/// The Node-RED add-on switches a plug on early every morning and off half an hour later.
fn plan_system(seed: u64, picker: &mut Picker<'_>, plan: &mut Plan) {
    let Some(plug) = picker
        .take("Laundry", 0, Want::Switch, false)
        .or_else(|| picker.take("Garage", 0, Want::Switch, true))
    else {
        return;
    };
    let user = node_red_user(seed);
    for (state, minute) in [("on", at(5, 45)), ("off", at(6, 15))] {
        plan.truth.system_changes.push(SystemChange {
            user_id: user.clone(),
            entity_id: plug.clone(),
            state: state.into(),
            local_time: hhmm(minute),
            day_type: DayType::All,
            description: "a Node-RED flow (the add-on's system user) runs the plug every morning"
                .into(),
            minute,
        });
    }
}

/// The owner's "Movie time" script: a living-room plug (the TV) on some evenings.
fn plan_script(picker: &mut Picker<'_>, plan: &mut Plan, owner: &str) {
    let Some(target) = picker
        .take("Living Room", 0, Want::Switch, true)
        .or_else(|| picker.take("Living Room", 0, Want::Light, true))
    else {
        return;
    };
    let window = (at(19, 30), at(21, 30));
    plan.truth.scripts.push(PlantedScript {
        entity_id: "script.movie_time".into(),
        alias: "Movie time".into(),
        targets: vec![EntityState::new(&target, "on")],
        user_id: owner.to_owned(),
        probability: 0.3,
        local_window: LocalWindow {
            start: hhmm(window.0),
            end: hhmm(window.1),
        },
        description: "the owner runs it from the dashboard on some evenings at any time in the \
                      window (changes in the owner's context, attributed to the script through \
                      script_started); the target goes off by hand 1.5–2.5 h later"
            .into(),
        window,
        rest: "off".into(),
    });
}

/// Every area with motion and free lights: "motion → lights on", "no motion → lights off".
fn plan_motion_automations(home: &Home, plan: &mut Plan) {
    for r in 0..home.roles.len() {
        let role = &home.roles[r];
        let lights: Vec<&String> = role
            .lights
            .iter()
            .filter(|l| !plan.reserved.contains(*l))
            .collect();
        let (Some(motion), false) = (&role.motion, lights.is_empty()) else {
            plan.motion_automations.push(None);
            continue;
        };
        let name = area_name(home, r);
        let first = plan.truth.automations.len();
        for (behaviour, to, state, word) in [
            (Behaviour::MotionOn, "on", "on", "on"),
            (Behaviour::MotionOff, "off", "off", "off"),
        ] {
            let alias = format!("{name} motion lights {word}");
            let targets: Vec<EntityState> =
                lights.iter().map(|l| EntityState::new(l, state)).collect();
            plan.truth.automations.push(PlantedAutomation {
                id: format!("simulated_motion_{word}_{}", role.area_id),
                entity_id: format!("automation.{}", slug(&alias)),
                alias,
                trigger: Trigger {
                    platform: TriggerPlatform::State,
                    entity_id: Some(motion.clone()),
                    state: Some(to.into()),
                    at: None,
                },
                target: targets[0].clone(),
                targets,
                day_type: DayType::All,
                behaviour,
            });
        }
        plan.motion_automations.push(Some((first, first + 1)));
    }
}

fn window(start: i64, end: i64) -> Option<LocalWindow> {
    Some(LocalWindow {
        start: hhmm(start),
        end: hhmm(end),
    })
}

/// Entities reaching a state in a local window `start`–`end` on some days, and why.
type TimedRegularity<'a> = (&'a [&'a String], &'a str, i64, i64, DayType, &'a str);

/// What the physical routine produces that a detector may find.
fn plan_regularities(home: &Home, plan: &mut Plan) {
    let regs = &mut plan.truth.regularities;
    let persons = |state: &str| -> Vec<EntityState> {
        home.persons
            .iter()
            .map(|p| EntityState::new(&p.entity_id, state))
            .collect()
    };
    let door = home.roles.iter().find_map(|r| r.door.clone());
    if home.persons.iter().any(|p| p.commutes) {
        let commuters = |state: &str| -> Vec<EntityState> {
            home.persons
                .iter()
                .filter(|p| p.commutes)
                .map(|p| EntityState::new(&p.entity_id, state))
                .chain(door.iter().map(|d| EntityState::new(d, "on")))
                .collect()
        };
        regs.push(Regularity {
            kind: RegularityKind::TimeOfDay,
            entities: commuters("not_home"),
            local_window: window(at(6, 45), at(8, 45)),
            delay_seconds: None,
            day_type: DayType::Weekday,
            description: "commuters leave on weekday mornings (waking 06:00–07:30, leaving 45–75 \
                          min later); the front door opens as they go"
                .into(),
        });
        regs.push(Regularity {
            kind: RegularityKind::TimeOfDay,
            entities: commuters("home"),
            local_window: window(at(16, 30), at(19, 0)),
            delay_seconds: None,
            day_type: DayType::Weekday,
            description: "commuters come back on weekday afternoons; the front door opens".into(),
        });
    }
    if let Some(door) = &door {
        let mut entities = persons("home");
        entities.extend(persons("not_home"));
        entities.push(EntityState::new(door, "on"));
        regs.push(Regularity {
            kind: RegularityKind::CoOccurrence,
            entities,
            local_window: None,
            delay_seconds: Some(Delay { min: 0, max: 1 }),
            day_type: DayType::All,
            description: "the front door opens the moment a person arrives or leaves".into(),
        });
        regs.push(Regularity {
            kind: RegularityKind::CoOccurrence,
            entities: vec![EntityState::new(door, "on"), EntityState::new(door, "off")],
            local_window: None,
            delay_seconds: Some(Delay { min: 55, max: 65 }),
            day_type: DayType::All,
            description: "the front door closes a minute after it opens".into(),
        });
    }
    let motion: Vec<&String> = home
        .roles
        .iter()
        .filter_map(|r| r.motion.as_ref())
        .collect();
    if !motion.is_empty() {
        regs.push(Regularity {
            kind: RegularityKind::CoOccurrence,
            entities: motion
                .iter()
                .map(|m| EntityState::new(m, "on"))
                .chain(motion.iter().map(|m| EntityState::new(m, "off")))
                .collect(),
            local_window: None,
            delay_seconds: Some(Delay { min: 120, max: 360 }),
            day_type: DayType::All,
            description: "a motion sensor clears 2–6 min after its last detection".into(),
        });
    }
    // media and plugs: (entity ids, state, window, days, why)
    let media: Vec<&String> = home
        .roles
        .iter()
        .flat_map(|r| r.media.iter())
        .filter(|m| !plan.reserved.contains(*m))
        .collect();
    let (mut meals, mut working) = (Vec::new(), Vec::new());
    for (ri, role) in home.roles.iter().enumerate() {
        for (k, (switch, _, _)) in role.plugs.iter().enumerate() {
            if plan.reserved.contains(switch) {
                continue;
            }
            // keyed as the routine keys them
            match (ri * 31 + k) % 3 {
                0 => meals.push(switch),
                1 => working.push(switch),
                _ => {}
            }
        }
    }
    let timed: [TimedRegularity<'_>; 13] = [
        (
            &media,
            "playing",
            at(19, 0),
            at(22, 30),
            DayType::All,
            "media plays in the evening when someone is awake at home (the living room's always, \
          others sometimes)",
        ),
        (
            &media,
            "idle",
            at(22, 30),
            at(22, 40),
            DayType::All,
            "the evening's media stops at 22:30",
        ),
        (
            &media,
            "playing",
            at(14, 0),
            at(17, 0),
            DayType::Weekend,
            "media plays on weekend afternoons too",
        ),
        (
            &media,
            "idle",
            at(17, 0),
            at(17, 10),
            DayType::Weekend,
            "the weekend afternoon's media stops at 17:00",
        ),
        (
            &media,
            "idle",
            at(6, 0),
            at(9, 30),
            DayType::All,
            "media wakes up (off → idle) when the first person at home wakes",
        ),
        (
            &media,
            "off",
            at(22, 0),
            at(23, 59),
            DayType::All,
            "media goes off when the last person at home goes to sleep",
        ),
        (
            &media,
            "off",
            at(6, 45),
            at(8, 45),
            DayType::Weekday,
            "media goes off when the last person leaves for work",
        ),
        (
            &meals,
            "on",
            at(7, 0),
            at(7, 30),
            DayType::All,
            "these plugs run at breakfast when someone is awake at home",
        ),
        (
            &meals,
            "off",
            at(7, 30),
            at(7, 40),
            DayType::All,
            "breakfast is over at 07:30",
        ),
        (
            &meals,
            "on",
            at(18, 0),
            at(19, 0),
            DayType::All,
            "these plugs run at dinner when someone is awake at home",
        ),
        (
            &meals,
            "off",
            at(19, 0),
            at(19, 10),
            DayType::All,
            "dinner is over at 19:00",
        ),
        (
            &working,
            "on",
            at(9, 0),
            at(17, 0),
            DayType::All,
            "these plugs run 09:00–17:00 when someone is awake at home",
        ),
        (
            &working,
            "off",
            at(17, 0),
            at(17, 10),
            DayType::All,
            "they stop at 17:00",
        ),
    ];
    for (entities, state, start, end, day_type, why) in timed {
        if entities.is_empty() {
            continue;
        }
        regs.push(Regularity {
            kind: RegularityKind::TimeOfDay,
            entities: entities
                .iter()
                .map(|e| EntityState::new(e, state))
                .collect(),
            local_window: window(start, end),
            delay_seconds: None,
            day_type,
            description: why.to_owned(),
        });
    }
    // plugs of one schedule switch together, within minutes (each minute one may follow), as the
    // schedule starts or ends and as someone comes home, wakes, leaves or goes to sleep
    for (group, why) in [
        (
            &meals,
            "mealtime plugs switch together when their window or someone's day starts or ends",
        ),
        (
            &working,
            "09:00–17:00 plugs switch together when their window or someone's day starts or ends",
        ),
    ] {
        if group.len() < 2 {
            continue;
        }
        for state in ["on", "off"] {
            regs.push(Regularity {
                kind: RegularityKind::CoOccurrence,
                entities: group.iter().map(|e| EntityState::new(e, state)).collect(),
                local_window: None,
                delay_seconds: Some(Delay { min: 0, max: 600 }),
                day_type: DayType::All,
                description: why.to_owned(),
            });
        }
    }
    // a script's entity and its targets change together
    for sc in &plan.truth.scripts {
        regs.push(Regularity {
            kind: RegularityKind::CoOccurrence,
            entities: std::iter::once(EntityState::new(&sc.entity_id, "on"))
                .chain(sc.targets.iter().cloned())
                .collect(),
            local_window: None,
            delay_seconds: Some(Delay { min: 0, max: 1 }),
            day_type: DayType::All,
            description: format!("{} switches its targets the moment it runs", sc.alias),
        });
    }
    // what follows a habit inherits its time of day; a sequence's target goes back later
    for s in &plan.truth.sequences {
        if let Some(h) = plan
            .truth
            .habits
            .iter()
            .find(|h| h.entity_id == s.trigger.entity_id && h.state == s.trigger.state)
        {
            let lo = h.minute - i64::from(h.jitter_minutes);
            let hi = h.minute
                + i64::from(h.jitter_minutes)
                + i64::from(s.delay_seconds.max).div_euclid(60)
                + 1;
            regs.push(Regularity {
                kind: RegularityKind::TimeOfDay,
                entities: vec![s.target.clone()],
                local_window: window(lo, hi),
                delay_seconds: None,
                day_type: s.day_type,
                description: format!(
                    "follows the habit {} → {} (a planted sequence)",
                    h.entity_id, h.state
                ),
            });
        }
        regs.push(Regularity {
            kind: RegularityKind::CoOccurrence,
            entities: vec![
                s.target.clone(),
                EntityState::new(&s.target.entity_id, &s.rest),
            ],
            local_window: None,
            delay_seconds: Some(Delay {
                min: (s.revert_minutes.0 * 60) as u32,
                max: (s.revert_minutes.1 * 60) as u32,
            }),
            day_type: s.day_type,
            description: "the person puts a sequence's target back some minutes later".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::home::{Profile, generate};
    use super::*;

    #[test]
    fn routines_are_the_same_for_a_seed_and_differ_across_seeds() {
        let routines = |seed| {
            let home = generate(Profile::Medium, seed, 0);
            serde_json::to_value(plan(seed, &home).routines(chrono_tz::Tz::UTC)).expect("json")
        };
        assert_eq!(routines(5), routines(5));
        assert_ne!(routines(5), routines(6));
        let r = routines(5);
        assert_eq!(r["time_zone"], "UTC");
        let habit = &r["habits"][0];
        assert_eq!(habit["kind"], "time_of_day");
        for key in [
            "entity_id",
            "state",
            "local_time",
            "jitter_minutes",
            "day_type",
            "probability",
            "user_id",
        ] {
            assert!(!habit[key].is_null(), "{key}: {habit}");
        }
        assert_eq!(habit.as_object().map(|o| o.len()), Some(8), "{habit}");
        let sequence = &r["sequences"][0];
        assert_eq!(sequence["kind"], "co_occurrence");
        assert!(
            sequence["trigger"]["entity_id"].is_string() && sequence["target"]["state"].is_string()
        );
        assert!(
            sequence["delay_seconds"]["min"].as_u64() < sequence["delay_seconds"]["max"].as_u64()
        );
        let automations = r["automations"].as_array().expect("automations");
        assert!(
            automations
                .iter()
                .any(|a| a["trigger"]["platform"] == "time"
                    && a["trigger"]["at"].is_string()
                    && a["trigger"].get("entity_id").is_none())
        );
        assert!(
            automations
                .iter()
                .any(|a| a["trigger"]["platform"] == "state"
                    && a["trigger"]["entity_id"].is_string()
                    && a["trigger"]["state"] == "on")
        );
        assert!(r["regularities"].as_array().is_some_and(|a| !a.is_empty()));
        let users = r["users"].as_array().expect("users");
        assert_eq!(users.iter().filter(|u| u["is_owner"] == true).count(), 1);
        assert!(
            users
                .iter()
                .any(|u| u["name"] == "Node-RED" && u["system_generated"] == true)
        );
    }

    #[test]
    fn weekends_are_saturday_and_sunday() {
        // 2025-01-06 (day 20_094) is a Monday
        let monday = 20_094;
        let kinds: Vec<bool> = (0..7).map(|d| is_weekend(monday + d)).collect();
        assert_eq!(kinds, [false, false, false, false, false, true, true]);
    }

    #[test]
    fn plans_scale_with_the_home_and_keep_the_truth_clean() {
        for (profile, habits) in [
            (Profile::Small, 6..=12),
            (Profile::Medium, 10..=24),
            (Profile::Large, 20..=40),
        ] {
            let home = generate(profile, 3, 0);
            let p = plan(3, &home);
            assert!(
                habits.contains(&p.truth.habits.len()),
                "{profile:?}: {} habits",
                p.truth.habits.len()
            );
            assert!(
                p.truth.sequences.len() >= 2,
                "{profile:?}: {:?}",
                p.truth.sequences
            );
            assert!(
                p.truth
                    .automations
                    .iter()
                    .any(|a| a.trigger.platform == TriggerPlatform::Time)
            );
            assert!(
                p.truth
                    .automations
                    .iter()
                    .any(|a| a.trigger.platform == TriggerPlatform::State)
            );
            assert_eq!(p.truth.system_changes.len(), 2, "{profile:?}");
            // no automation drives a habit's or a sequence's entity
            let planted: HashSet<&str> = p
                .truth
                .habits
                .iter()
                .map(|h| h.entity_id.as_str())
                .chain(
                    p.truth
                        .sequences
                        .iter()
                        .map(|s| s.target.entity_id.as_str()),
                )
                .collect();
            for a in &p.truth.automations {
                for t in &a.targets {
                    assert!(!planted.contains(t.entity_id.as_str()), "{a:?}");
                }
            }
            let persons: HashSet<&str> = home.persons.iter().map(|p| p.user_id.as_str()).collect();
            assert!(
                p.truth
                    .habits
                    .iter()
                    .all(|h| persons.contains(h.user_id.as_str()))
            );
            let days: HashSet<DayType> = p.truth.habits.iter().map(|h| h.day_type).collect();
            assert_eq!(
                days.len(),
                3,
                "{profile:?}: all, weekday and weekend habits"
            );
            assert!(
                p.truth
                    .habits
                    .iter()
                    .any(|h| h.minute + i64::from(h.jitter_minutes) >= DAY),
                "one near midnight"
            );
        }
    }
}
