//! Which entities and states can make a habit.
//!
//! Only discrete, actionable states count: a person (or a device a person pressed) changed
//! something one could automate. Allow-lists, so a new Home Assistant domain is left out until it
//! is known to fit:
//!
//! - **targets** ([`TARGET_DOMAINS`]): what a pattern suggests doing — the entity of a time-of-day
//!   habit, the entity that follows in a co-occurrence;
//! - **triggers** ([`TRIGGER_ONLY_DOMAINS`] and every target): what may come first in a
//!   co-occurrence — also doors, motion and presence.
//!
//! Left out on purpose: measurements and settings (`sensor`, `number`, `input_number`, `counter`,
//! `input_text`, `input_datetime`, `text`, `date`, `time`, `datetime`, `select`: device
//! configuration), the environment (`sun`, `weather`, `zone`), HomeIQ's and HA's own machinery
//! (`automation`, `script`, `timer`, `update`, `event`, `calendar`, `tts`, `conversation`,
//! `group`: derived from its members), stateless or media entities (`button`, `input_button`,
//! `image`, `camera`, `notify`). A state that is a number is never a target or trigger.
//! `scene` is a target with the state `activated` (its state is the time of its last activation).

/// Domains whose entities a habit can act on.
pub(crate) const TARGET_DOMAINS: [&str; 18] = [
    "alarm_control_panel",
    "climate",
    "cover",
    "fan",
    "humidifier",
    "input_boolean",
    "input_select",
    "lawn_mower",
    "light",
    "lock",
    "media_player",
    "remote",
    "scene",
    "siren",
    "switch",
    "vacuum",
    "valve",
    "water_heater",
];

/// Domains that may only come first in a co-occurrence.
pub(crate) const TRIGGER_ONLY_DOMAINS: [&str; 3] = ["binary_sensor", "device_tracker", "person"];

/// States that are never the end of a transition, and whose successor is not one either: the
/// entity was not there.
const ABSENT_STATES: [&str; 3] = ["unavailable", "unknown", ""];

/// States on the way to another (`opening` before `open`): skipped as if not reported, so
/// `closed → opening → open` is one transition `closed → open`.
const PASSING_STATES: [&str; 8] = [
    "opening",
    "closing",
    "locking",
    "unlocking",
    "buffering",
    "arming",
    "disarming",
    "pending",
];

/// Every domain whose changes an analysis reads: the targets and the trigger-only ones.
pub(crate) fn analysed_domains() -> Vec<&'static str> {
    TARGET_DOMAINS
        .iter()
        .chain(TRIGGER_ONLY_DOMAINS.iter())
        .copied()
        .collect()
}

/// The state a scene's activation counts as.
pub(crate) const SCENE_ACTIVATED: &str = "activated";

/// What an entity of a domain can be in a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Never part of a pattern.
    Ignored,
    /// Only the first entity of a co-occurrence.
    Trigger,
    /// Anything: a time-of-day habit, either side of a co-occurrence.
    Target,
}

impl Role {
    /// The role of entities of `domain`.
    pub(crate) fn of(domain: &str) -> Role {
        if TARGET_DOMAINS.contains(&domain) {
            Role::Target
        } else if TRIGGER_ONLY_DOMAINS.contains(&domain) {
            Role::Trigger
        } else {
            Role::Ignored
        }
    }
}

/// How a reported state is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateClass {
    /// The entity is not there (`unavailable`, `unknown`, empty): remembered as the last state,
    /// so the next state is no transition either.
    Absent,
    /// On the way to another state, or a number: not remembered, not counted.
    Skipped,
    /// A discrete state.
    Discrete,
}

/// The class of `state`.
pub(crate) fn classify(state: &str) -> StateClass {
    if ABSENT_STATES.contains(&state) {
        StateClass::Absent
    } else if PASSING_STATES.contains(&state) || state.trim().parse::<f64>().is_ok() {
        StateClass::Skipped
    } else {
        StateClass::Discrete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_classes() {
        assert_eq!(Role::of("light"), Role::Target);
        assert_eq!(Role::of("scene"), Role::Target);
        assert_eq!(Role::of("binary_sensor"), Role::Trigger);
        assert_eq!(Role::of("person"), Role::Trigger);
        for ignored in [
            "sensor",
            "sun",
            "number",
            "automation",
            "button",
            "weather",
            "update",
        ] {
            assert_eq!(Role::of(ignored), Role::Ignored, "{ignored}");
        }
        assert_eq!(classify("on"), StateClass::Discrete);
        assert_eq!(classify("unavailable"), StateClass::Absent);
        assert_eq!(classify(""), StateClass::Absent);
        assert_eq!(classify("opening"), StateClass::Skipped);
        assert_eq!(classify("21.5"), StateClass::Skipped);
        assert_eq!(classify("nan"), StateClass::Skipped, "a float, for Rust");
    }
}
