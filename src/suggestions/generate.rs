//! Building suggestions (pure): a pattern or a synergy becomes a [`Proposal`] — the automation in
//! Home Assistant's current form, its template wording, its evidence and its score.
//!
//! - **Automations** use `triggers`/`conditions`/`actions` with `trigger: state` / `trigger: time`
//!   and `action: <domain>.<service>`, the id `homeiq_<suggestion id>`, an alias (the title) and a
//!   description saying HomeIQ created it and why. The same pattern always gives the same
//!   automation (no clock, no randomness).
//! - **Security.** Unlocking a lock, opening a cover of class garage, door or gate, and disarming
//!   an alarm are never actions: such a habit becomes a reminder
//!   (`persistent_notification.create`) that only tells the person.
//! - **Score** (0..1). Learned: `0.35 + 0.65 × (0.5 confidence + 0.3 frequency + 0.2 effort)`,
//!   frequency = the share of days it would have acted (capped at 1), effort = 1 for an action,
//!   0.3 for a reminder (it saves less manual work). Synergies: below 0.3, so every learned
//!   suggestion ranks above every synergy.
//! - **Wording.** [`template_wording`] writes the title and the plain explanation with the
//!   evidence counts from the pattern alone; a language model may replace them later
//!   ([`Wording::Llm`]), never the automation.

use serde_json::{Value, json};

use super::model::{Evidence, Proposal, Sensitive, Source, SuggestionKind, Wording};
use crate::patterns::{DayType, Pattern, PatternKind};

/// Prefix of every automation id HomeIQ writes.
pub(crate) const AUTOMATION_PREFIX: &str = "homeiq_";

/// Minutes after motion or presence clears before a synergy turns things off.
const CLEAR_MINUTES: u32 = 10;

/// What the builders need to know of an entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EntityInfo {
    /// The name people see.
    pub name: String,
    /// `device_class` from its state.
    pub device_class: Option<String>,
    /// Its area (its own, else its device's).
    pub area_id: Option<String>,
}

/// Looks entities up (the registry catalog; a map in tests).
pub(crate) trait Lookup {
    /// What is known of `entity_id` (its id as name when nothing is).
    fn info(&self, entity_id: &str) -> EntityInfo;
}

/// The stable id of a suggestion built on pattern `pattern_id`.
pub(crate) fn pattern_suggestion_id(pattern_id: &str) -> String {
    format!("p{pattern_id}")
}

/// The automation id of suggestion `id`.
pub(crate) fn automation_id(id: &str) -> String {
    format!("{AUTOMATION_PREFIX}{id}")
}

/// 16 hex digits of SHA-256 over `parts` (separated).
pub(crate) fn stable_hex<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(b"\0");
    }
    ctx.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn domain(entity_id: &str) -> &str {
    entity_id.split_once('.').map_or("", |(d, _)| d)
}

/// The service call that brings `entity_id` to `state`, or `None` when HomeIQ knows none.
pub(crate) fn service_for(entity_id: &str, state: &str) -> Option<(String, Value)> {
    let d = domain(entity_id);
    let plain = |service: &str| Some((format!("{d}.{service}"), json!({})));
    match (d, state) {
        (
            "light" | "switch" | "fan" | "input_boolean" | "humidifier" | "siren" | "remote"
            | "media_player" | "water_heater",
            "on",
        ) => plain("turn_on"),
        (
            "light" | "switch" | "fan" | "input_boolean" | "humidifier" | "siren" | "remote"
            | "media_player" | "water_heater" | "climate",
            "off",
        ) => plain("turn_off"),
        ("media_player", "playing") => plain("media_play"),
        ("media_player", "paused") => plain("media_pause"),
        ("media_player", "idle") => plain("media_stop"),
        ("cover", "open") => plain("open_cover"),
        ("cover", "closed") => plain("close_cover"),
        ("valve", "open") => plain("open_valve"),
        ("valve", "closed") => plain("close_valve"),
        ("lock", "locked") => plain("lock"),
        ("lock", "unlocked") => plain("unlock"),
        ("lock", "open") => plain("open"),
        ("scene", _) => Some(("scene.turn_on".into(), json!({}))),
        ("vacuum", "cleaning") => plain("start"),
        ("vacuum", "docked" | "returning") => plain("return_to_base"),
        ("lawn_mower", "mowing") => plain("start_mowing"),
        ("lawn_mower", "docked" | "returning") => plain("dock"),
        ("alarm_control_panel", "disarmed") => plain("alarm_disarm"),
        ("alarm_control_panel", s) => s
            .strip_prefix("armed_")
            .map(|mode| (format!("{d}.alarm_arm_{mode}"), json!({}))),
        ("climate", mode) => Some(("climate.set_hvac_mode".into(), json!({ "hvac_mode": mode }))),
        ("input_select", option) => Some((
            "input_select.select_option".into(),
            json!({ "option": option }),
        )),
        _ => None,
    }
}

/// Whether bringing `entity_id` (of `device_class`) to `state` is security-sensitive.
pub(crate) fn sensitive(
    entity_id: &str,
    state: &str,
    device_class: Option<&str>,
) -> Option<Sensitive> {
    match (domain(entity_id), state) {
        ("lock", "unlocked" | "open") => Some(Sensitive::Unlock),
        ("cover", "open") if matches!(device_class, Some("garage" | "door" | "gate")) => {
            Some(Sensitive::OpenCover)
        }
        ("alarm_control_panel", "disarmed") => Some(Sensitive::Disarm),
        _ => None,
    }
}

/// "Turn on", "Open", "Set … to heat" as the title's verb for reaching `state`.
fn imperative(entity_id: &str, state: &str) -> String {
    match (domain(entity_id), state) {
        (_, "on") => "Turn on".into(),
        (_, "off") => "Turn off".into(),
        (_, "open") => "Open".into(),
        (_, "closed") => "Close".into(),
        (_, "locked") => "Lock".into(),
        (_, "unlocked") => "Unlock".into(),
        (_, "playing") => "Play".into(),
        (_, "paused") => "Pause".into(),
        ("scene", _) => "Activate".into(),
        (_, "cleaning" | "mowing") => "Start".into(),
        (_, "docked") => "Dock".into(),
        (_, "disarmed") => "Disarm".into(),
        (_, s) if s.starts_with("armed_") => format!("Arm ({})", s.trim_start_matches("armed_")),
        (_, s) => format!("Set to {s}:"),
    }
}

/// "went on", "opened", "was unlocked": what happened, in the past tense.
fn happened(entity_id: &str, state: &str, device_class: Option<&str>) -> String {
    let opening = matches!(
        device_class,
        Some("door" | "window" | "opening" | "garage_door" | "garage")
    );
    let motion = matches!(device_class, Some("motion" | "occupancy" | "presence"));
    match (domain(entity_id), state) {
        ("binary_sensor", "on") if opening => "opened".into(),
        ("binary_sensor", "off") if opening => "closed".into(),
        ("binary_sensor", "on") if motion => "detected someone".into(),
        ("binary_sensor", "off") if motion => "cleared".into(),
        ("person" | "device_tracker", "home") => "came home".into(),
        ("person" | "device_tracker", "not_home") => "left home".into(),
        ("scene", _) => "was activated".into(),
        (_, "on") => "went on".into(),
        (_, "off") => "went off".into(),
        (_, "open") => "opened".into(),
        (_, "closed") => "closed".into(),
        (_, "locked") => "was locked".into(),
        (_, "unlocked") => "was unlocked".into(),
        (_, "playing") => "started playing".into(),
        (_, s) => format!("became {s}"),
    }
}

/// "opens", "detects someone": the trigger, in the present tense.
fn happens(entity_id: &str, state: &str, device_class: Option<&str>) -> String {
    let past = happened(entity_id, state, device_class);
    match past.as_str() {
        "opened" => "opens".into(),
        "closed" => "closes".into(),
        "detected someone" => "detects someone".into(),
        "cleared" => "clears".into(),
        "came home" => "comes home".into(),
        "left home" => "leaves home".into(),
        "went on" => "goes on".into(),
        "went off" => "goes off".into(),
        _ => format!("becomes {state}"),
    }
}

fn days_phrase(day_type: DayType) -> (&'static str, &'static str) {
    match day_type {
        DayType::All => ("days", ""),
        DayType::Weekday => ("weekdays", " on weekdays"),
        DayType::Weekend => ("weekend days", " at weekends"),
    }
}

fn duration_words(seconds: u32) -> String {
    if seconds < 90 {
        format!("{seconds} s")
    } else {
        format!("{} min", seconds.div_ceil(60))
    }
}

/// `HH:MM` → `HH:MM:00` (anything else is kept).
fn at_time(hhmm: &str) -> String {
    if hhmm.len() == 5 {
        format!("{hhmm}:00")
    } else {
        hhmm.to_owned()
    }
}

/// Title and explanation of a pattern's suggestion from its numbers alone (the template
/// wording; an LLM may rewrite them).
pub(crate) fn template_wording(p: &Pattern, lookup: &dyn Lookup) -> (String, String) {
    let Some(target) = p.entities.last() else {
        return ("Empty pattern".into(), String::new());
    };
    let t = lookup.info(&target.entity_id);
    let class = t.device_class.as_deref();
    let guard = sensitive(&target.entity_id, &target.state, class);
    let verb = imperative(&target.entity_id, &target.state);
    let did = happened(&target.entity_id, &target.state, class);
    let (days, on_days) = days_phrase(p.day_type);
    let reminder = match guard {
        Some(Sensitive::Unlock) => {
            " Unlocking is security-sensitive: HomeIQ only reminds you and never unlocks it itself."
        }
        Some(Sensitive::OpenCover) => {
            " Opening it is security-sensitive: HomeIQ only reminds you and never opens it itself."
        }
        Some(Sensitive::Disarm) => {
            " Disarming is security-sensitive: HomeIQ only reminds you and never disarms it itself."
        }
        None => "",
    };
    match (p.kind, &p.time_window, p.entities.first()) {
        (PatternKind::TimeOfDay, Some(w), _) => {
            let title = match guard {
                Some(_) => format!(
                    "Remind me: {} {}{on_days} at {}",
                    verb.to_lowercase(),
                    t.name,
                    w.centre
                ),
                None => format!("{verb} {} at {}{on_days}", t.name, w.centre),
            };
            let out_of = p.eligible_days.unwrap_or(p.occurrences);
            let explanation = format!(
                "On {} of the last {out_of} {days} {} {did} between {} and {} (typically {}).{}",
                p.occurrences,
                t.name,
                w.start,
                w.end,
                w.centre,
                if guard.is_some() {
                    reminder.to_owned()
                } else {
                    format!(" HomeIQ would do it at {}{on_days}.", w.centre)
                }
            );
            (title, explanation)
        }
        (PatternKind::CoOccurrence, _, Some(first)) if p.entities.len() == 2 => {
            let f = lookup.info(&first.entity_id);
            let fclass = f.device_class.as_deref();
            let when = happens(&first.entity_id, &first.state, fclass);
            let when_past = happened(&first.entity_id, &first.state, fclass);
            let title = match guard {
                Some(_) => format!(
                    "Remind me to {} {} when {} {when}",
                    verb.to_lowercase(),
                    t.name,
                    f.name
                ),
                None => format!("{verb} {} when {} {when}", t.name, f.name),
            };
            let delay = p.delay.as_ref().map_or(String::new(), |d| {
                format!(
                    " within {} (typically after {})",
                    duration_words(d.max_seconds.max(1)),
                    duration_words(d.median_seconds)
                )
            });
            let out_of = p.trigger_occurrences.unwrap_or(p.occurrences);
            let explanation = format!(
                "{} of the {out_of} times {} {when_past}, {} {did}{delay}.{}",
                p.occurrences,
                f.name,
                t.name,
                if guard.is_some() {
                    reminder.to_owned()
                } else {
                    format!(" HomeIQ would do it as soon as {} {when}.", f.name)
                }
            );
            (title, explanation)
        }
        _ => (
            format!("{verb} {}", t.name),
            format!("A learned habit of {}.", t.name),
        ),
    }
}

fn automation(
    id: &str,
    alias: &str,
    description: &str,
    triggers: Vec<Value>,
    conditions: Vec<Value>,
    actions: Vec<Value>,
) -> Value {
    json!({
        "id": automation_id(id),
        "alias": alias,
        "description": description,
        "triggers": triggers,
        "conditions": conditions,
        "actions": actions,
        "mode": "single",
    })
}

fn call(service: &str, targets: &[&str], data: Value) -> Value {
    let entity: Value = match targets {
        [one] => json!(one),
        many => json!(many),
    };
    let mut action = json!({ "action": service, "target": { "entity_id": entity } });
    if data.as_object().is_some_and(|d| !d.is_empty()) {
        action["data"] = data;
    }
    action
}

fn notify(id: &str, title: &str, message: &str) -> Value {
    json!({
        "action": "persistent_notification.create",
        "data": {
            "title": title,
            "message": message,
            "notification_id": automation_id(id),
        }
    })
}

fn description(why: &str, id: &str) -> String {
    format!("Created by HomeIQ (suggestion {id}): {why}")
}

/// The rank of a learned suggestion, 0.35..1 (above every synergy's): how sure the pattern is,
/// how often the automation would act, and how much manual work that saves: a notify-only one
/// saves little; and a routine the device reports doing by itself (a plug on its own schedule),
/// or that nobody attributed, saves less than one a person visibly does (`manual`, see
/// [`crate::patterns::Actors::manual_share`]), so people's habits outrank the home's machinery.
fn score_learned(confidence: f64, frequency: f64, notify_only: bool, manual: f64) -> f64 {
    let effort = if notify_only { 0.3 } else { 1.0 };
    let inner = 0.5 * confidence.clamp(0.0, 1.0) + 0.3 * frequency.clamp(0.0, 1.0) + 0.2 * effort;
    round3(0.35 + 0.65 * inner * manual.clamp(0.0, 1.0))
}

/// The score of a learned suggestion whose action a better-ranked one already proposes: half
/// its height above the learned floor (0.35): it stays above every synergy and makes room near
/// the top for other actions.
pub(crate) fn repeated_action(score: f64) -> f64 {
    round3(0.35 + (score - 0.35).max(0.0) * 0.5)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The suggestion of a learned pattern, or `None` when HomeIQ knows no service for its target.
pub(crate) fn from_pattern(p: &Pattern, lookup: &dyn Lookup) -> Option<Proposal> {
    let target = p.entities.last()?;
    let t = lookup.info(&target.entity_id);
    let (service, data) = service_for(&target.entity_id, &target.state)?;
    let guard = sensitive(&target.entity_id, &target.state, t.device_class.as_deref());
    let id = pattern_suggestion_id(&p.id);
    let (title, explanation) = template_wording(p, lookup);
    let why = description(&explanation, &id);
    let action = match guard {
        Some(_) => notify(&id, "HomeIQ reminder", &title),
        None => call(&service, &[target.entity_id.as_str()], data),
    };
    let (kind, triggers, conditions, frequency, out_of) = match p.kind {
        PatternKind::TimeOfDay => {
            let w = p.time_window.as_ref()?;
            let conditions = match p.day_type {
                DayType::All => vec![],
                DayType::Weekday => vec![
                    json!({"condition": "time", "weekday": ["mon", "tue", "wed", "thu", "fri"]}),
                ],
                DayType::Weekend => vec![json!({"condition": "time", "weekday": ["sat", "sun"]})],
            };
            let eligible = p.eligible_days.unwrap_or(p.occurrences).max(1);
            (
                SuggestionKind::TimeOfDay,
                vec![json!({"trigger": "time", "at": at_time(&w.centre)})],
                conditions,
                f64::from(p.occurrences) / f64::from(eligible),
                p.eligible_days,
            )
        }
        PatternKind::CoOccurrence => {
            let first = p.entities.first().filter(|_| p.entities.len() == 2)?;
            let span_days = ((p.last_seen - p.first_seen).num_hours() as f64 / 24.0).max(1.0);
            (
                SuggestionKind::CoOccurrence,
                vec![json!({"trigger": "state", "entity_id": first.entity_id, "to": first.state})],
                vec![],
                f64::from(p.occurrences) / span_days,
                p.trigger_occurrences,
            )
        }
    };
    let automation = automation(&id, &title, &why, triggers, conditions, vec![action]);
    let entities: Vec<String> = p.entities.iter().map(|e| e.entity_id.clone()).collect();
    let area_id = entities.iter().rev().find_map(|e| lookup.info(e).area_id);
    Some(Proposal {
        kind,
        source: Source::Pattern,
        pattern_id: Some(p.id.clone()),
        area_id,
        entities,
        title,
        explanation,
        wording: Wording::Template,
        evidence: Evidence {
            occurrences: p.occurrences,
            out_of,
            confidence: Some(p.confidence),
            first_seen: Some(p.first_seen),
            last_seen: Some(p.last_seen),
        },
        score: score_learned(
            p.confidence,
            frequency,
            guard.is_some(),
            p.actors.manual_share(),
        ),
        notify_only: guard,
        automation,
        strength_at_undo: None,
        template: None,
    })
}

/// A synergy candidate: a sensor and what it could drive in its area.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Synergy {
    /// What it proposes.
    pub kind: SuggestionKind,
    /// The area.
    pub area_id: String,
    /// The area's name.
    pub area_name: String,
    /// The sensor (first).
    pub sensor: String,
    /// What it drives, sorted.
    pub targets: Vec<String>,
}

/// The stable id of a synergy.
pub(crate) fn synergy_id(s: &Synergy) -> String {
    let kind = match s.kind {
        SuggestionKind::MotionLight => "motion_light",
        SuggestionKind::DoorLight => "door_light",
        SuggestionKind::PresenceClimate => "presence_climate",
        SuggestionKind::TimeOfDay | SuggestionKind::CoOccurrence => "pattern",
    };
    let mut parts = vec![kind, s.sensor.as_str()];
    parts.extend(s.targets.iter().map(String::as_str));
    format!("s{}", stable_hex(parts))
}

/// The suggestion of a synergy.
pub(crate) fn from_synergy(s: &Synergy, lookup: &dyn Lookup) -> Proposal {
    let id = synergy_id(s);
    let sensor = lookup.info(&s.sensor);
    let names: Vec<String> = s.targets.iter().map(|t| lookup.info(t).name).collect();
    let what = names.join(", ");
    let targets: Vec<&str> = s.targets.iter().map(String::as_str).collect();
    let (title, explanation, triggers, actions, weight) = match s.kind {
        SuggestionKind::DoorLight => (
            format!("Turn on {what} when {} opens", sensor.name),
            format!(
                "{} and {what} are in {}, and no automation links them. Suggested from the registry (not learned from your history): the light goes on when the door opens.",
                sensor.name, s.area_name
            ),
            vec![json!({"trigger": "state", "entity_id": s.sensor, "to": "on"})],
            vec![call("light.turn_on", &targets, json!({}))],
            0.8,
        ),
        SuggestionKind::MotionLight | SuggestionKind::PresenceClimate => {
            let (domain, noun) = if s.kind == SuggestionKind::MotionLight {
                ("light", "someone is there")
            } else {
                ("climate", "someone is there")
            };
            let minutes = if s.kind == SuggestionKind::MotionLight {
                CLEAR_MINUTES
            } else {
                3 * CLEAR_MINUTES
            };
            (
                format!(
                    "{} {what} while {} detects someone",
                    if domain == "light" { "Light" } else { "Run" },
                    sensor.name
                ),
                format!(
                    "{} and {what} are in {}, and no automation links them. Suggested from the registry (not learned from your history): {what} turn on when {noun} and off {minutes} min after {} clears.",
                    sensor.name, s.area_name, sensor.name
                ),
                vec![
                    json!({"trigger": "state", "entity_id": s.sensor, "to": "on", "id": "detected"}),
                    json!({"trigger": "state", "entity_id": s.sensor, "to": "off", "for": {"minutes": minutes}, "id": "cleared"}),
                ],
                vec![json!({"choose": [
                    {"conditions": [{"condition": "trigger", "id": "detected"}],
                     "sequence": [call(&format!("{domain}.turn_on"), &targets, json!({}))]},
                    {"conditions": [{"condition": "trigger", "id": "cleared"}],
                     "sequence": [call(&format!("{domain}.turn_off"), &targets, json!({}))]},
                ]})],
                if domain == "light" { 1.0 } else { 0.6 },
            )
        }
        SuggestionKind::TimeOfDay | SuggestionKind::CoOccurrence => {
            (String::new(), String::new(), vec![], vec![], 0.0)
        }
    };
    let why = description(&explanation, &id);
    let mut entities = vec![s.sensor.clone()];
    entities.extend(s.targets.iter().cloned());
    Proposal {
        kind: s.kind,
        source: Source::Synergy,
        pattern_id: None,
        area_id: Some(s.area_id.clone()),
        entities,
        automation: automation(&id, &title, &why, triggers, vec![], actions),
        title,
        explanation,
        wording: Wording::Template,
        evidence: Evidence {
            occurrences: 0,
            out_of: None,
            confidence: None,
            first_seen: None,
            last_seen: None,
        },
        score: round3(0.1 + 0.15 * weight),
        notify_only: None,
        strength_at_undo: None,
        template: None,
    }
}

/// A sensor's role in synergies, from its domain and device class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SensorRole {
    /// Motion, occupancy or presence.
    Presence,
    /// A door or opening contact.
    Door,
}

/// The synergy role of `entity_id` of `device_class`.
pub(crate) fn sensor_role(entity_id: &str, device_class: Option<&str>) -> Option<SensorRole> {
    if domain(entity_id) != "binary_sensor" {
        return None;
    }
    match device_class? {
        "motion" | "occupancy" | "presence" => Some(SensorRole::Presence),
        "door" | "opening" => Some(SensorRole::Door),
        _ => None,
    }
}

/// What a language model may know to reword `proposal` (issue 17, item 6): its own entities
/// (names, areas, domains, the states they reach, which one starts it) and its evidence, with the
/// template wording; never anything else of the home. `pattern` is the pattern it was built on.
pub(crate) fn wording_request(
    proposal: &Proposal,
    pattern: Option<&Pattern>,
    lookup: &dyn Lookup,
) -> crate::llm::WordingRequest {
    use crate::llm::{EntityFacts, EntityRole, LocalWindow, WordingKind, WordingRequest};
    let kind = match proposal.kind {
        SuggestionKind::TimeOfDay => WordingKind::TimeOfDay,
        SuggestionKind::CoOccurrence => WordingKind::CoOccurrence,
        SuggestionKind::MotionLight
        | SuggestionKind::DoorLight
        | SuggestionKind::PresenceClimate => WordingKind::Synergy,
    };
    let state_of = |entity_id: &str| {
        pattern.and_then(|p| {
            p.entities
                .iter()
                .find(|e| e.entity_id == entity_id)
                .map(|e| e.state.clone())
        })
    };
    let entities = proposal
        .entities
        .iter()
        .enumerate()
        .map(|(i, entity_id)| {
            let info = lookup.info(entity_id);
            EntityFacts {
                entity_id: entity_id.clone(),
                name: Some(info.name),
                area: info.area_id,
                domain: entity_id
                    .split_once('.')
                    .map_or(entity_id.as_str(), |(d, _)| d)
                    .to_owned(),
                role: if i == 0 && kind != WordingKind::TimeOfDay {
                    EntityRole::Trigger
                } else {
                    EntityRole::Action
                },
                state: state_of(entity_id),
            }
        })
        .collect();
    let (title, explanation) = proposal
        .template
        .clone()
        .unwrap_or_else(|| (proposal.title.clone(), proposal.explanation.clone()));
    let evidence = &proposal.evidence;
    WordingRequest {
        kind,
        entities,
        window: pattern
            .and_then(|p| p.time_window.as_ref())
            .map(LocalWindow::from),
        delay_seconds: pattern
            .and_then(|p| p.delay.as_ref())
            .map(|d| d.median_seconds),
        day_type: pattern.map(|p| p.day_type),
        occurrences: (evidence.occurrences > 0).then_some(evidence.occurrences),
        out_of: evidence.out_of,
        confidence: evidence.confidence,
        title,
        explanation,
    }
}
