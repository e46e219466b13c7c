//! The rule engine: pure functions of recorded events and an injected clock.
//!
//! A [`Rule`] selects entities (exact id or glob, domain, area, device) and says which changes
//! count: a state change (`from`/`to`), a numeric crossing (`above`/`below` with `hysteresis`), or a
//! change of one attribute (`attribute`, combinable with the others: they then look at the
//! attribute's value instead of the state). `for` delays the match until the condition has held
//! that many seconds (cancelled if it stops holding); `cooldown` suppresses further matches of the
//! same rule and entity for that many seconds.
//!
//! [`RuleEngine`] keeps one [`RuleState`] per (target, rule, entity): whether a numeric rule is
//! armed, the pending `for` timer, the last match (for the cooldown). [`RuleEngine::evaluate`]
//! takes an event and `now`; [`RuleEngine::due`] returns the `for` matches whose time has come.
//! Nothing here sleeps or reads a clock, so the semantics are unit-tested on event sequences.
//!
//! Semantics, chosen to avoid the Python system's noise:
//! - state rules (no `above`/`below`) match only when the watched value changes: an attribute-only
//!   update never counts as a state change;
//! - numeric rules fire on crossing into the range, not while staying in it; after firing they
//!   re-arm only once the value is back beyond the threshold by `hysteresis`; a non-numeric value
//!   (`unavailable`) leaves the armed state as it is, so a flaky sensor does not re-trigger;
//! - an event without `old_state` (a new entity, or every entity of the snapshot HomeIQ takes when
//!   it starts) never fires: it only primes the rule, so a restart does not replay every rule;
//! - otherwise the first event seen for an entity is judged against its `old_state` (an entity
//!   already in range does not fire; a non-numeric old value counts as out of range).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ha::model::State;
use crate::ingest::LiveEvent;

/// Longest `for` and `cooldown`, seconds (a week).
pub(crate) const MAX_SECONDS: u64 = 7 * 24 * 3600;

/// Rules per target.
pub(crate) const MAX_RULES: usize = 100;

/// One rule of a webhook target, as the API takes and returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    /// Entity id (`sensor.outdoor_temperature`) or a glob over entity ids (`sensor.*_power`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Only entities of this domain (`light`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Only entities in this area (the entity's own area, else its device's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Only entities of this device (device id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The watched value before the change must be this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The watched value after the change must be this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Fires when the numeric value crosses above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fires when the numeric value crosses below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// After firing, the value must come back this far beyond the threshold before the rule can
    /// fire again (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<f64>,
    /// Watch this attribute instead of the state: fires when it changes (or, with `to`/`from`/
    /// `above`/`below`, when its value matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// Seconds the condition must hold before the rule fires.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    #[schema(rename = "for", maximum = 604800)]
    pub for_secs: Option<u64>,
    /// Seconds after a match during which the same rule and entity do not match again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 604800)]
    pub cooldown: Option<u64>,
}

/// A rule that cannot be used; `field` is relative to the rule (`above`, `entity_id`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub(crate) struct RuleError {
    /// The rule's field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        field,
        message: message.into(),
    }
}

/// How a rule picks entities by id.
#[derive(Debug, Clone)]
enum IdSelector {
    Any,
    Exact(String),
    Glob(globset::GlobMatcher),
}

/// A validated rule, ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    /// The rule as given.
    pub rule: Rule,
    id: IdSelector,
}

fn non_empty(field: &'static str, value: Option<&String>) -> Result<(), RuleError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(invalid(field, "must not be empty")),
        Some(v) if v.len() > 255 => Err(invalid(field, "longer than 255 characters")),
        _ => Ok(()),
    }
}

impl CompiledRule {
    /// Validates `rule`.
    pub(crate) fn new(rule: Rule) -> Result<Self, RuleError> {
        non_empty("entity_id", rule.entity_id.as_ref())?;
        non_empty("domain", rule.domain.as_ref())?;
        non_empty("area", rule.area.as_ref())?;
        non_empty("device", rule.device.as_ref())?;
        non_empty("attribute", rule.attribute.as_ref())?;
        if rule.from.as_ref().is_some_and(|v| v.len() > 255) {
            return Err(invalid("from", "longer than 255 characters"));
        }
        if rule.to.as_ref().is_some_and(|v| v.len() > 255) {
            return Err(invalid("to", "longer than 255 characters"));
        }
        if rule.entity_id.is_none()
            && rule.domain.is_none()
            && rule.area.is_none()
            && rule.device.is_none()
        {
            return Err(invalid(
                "entity_id",
                "a rule needs at least one of entity_id, domain, area or device",
            ));
        }
        let id = match rule.entity_id.as_deref().map(str::trim) {
            None => IdSelector::Any,
            Some(pattern) if pattern.contains(['*', '?', '[', '{']) => IdSelector::Glob(
                globset::GlobBuilder::new(pattern)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| invalid("entity_id", format!("invalid glob: {e}")))?
                    .compile_matcher(),
            ),
            Some(id) => {
                let valid = id.split_once('.').is_some_and(|(d, o)| {
                    !d.is_empty()
                        && !o.is_empty()
                        && id.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b)
                        })
                });
                if !valid {
                    return Err(invalid(
                        "entity_id",
                        format!("`{id}` is not an entity id (domain.object_id) or a glob"),
                    ));
                }
                IdSelector::Exact(id.to_owned())
            }
        };
        for (field, value) in [("above", rule.above), ("below", rule.below)] {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(invalid(field, "must be a finite number"));
            }
        }
        if let (Some(above), Some(below)) = (rule.above, rule.below)
            && above >= below
        {
            return Err(invalid("below", "must be greater than above"));
        }
        if let Some(h) = rule.hysteresis {
            if !h.is_finite() || h < 0.0 {
                return Err(invalid("hysteresis", "must be a number >= 0"));
            }
            if rule.above.is_none() && rule.below.is_none() {
                return Err(invalid("hysteresis", "needs above or below"));
            }
        }
        if (rule.above.is_some() || rule.below.is_some())
            && (rule.to.is_some() || rule.from.is_some())
        {
            return Err(invalid(
                if rule.to.is_some() { "to" } else { "from" },
                "cannot be combined with above/below; use two rules",
            ));
        }
        if rule.for_secs.is_some_and(|s| s > MAX_SECONDS) {
            return Err(invalid("for", format!("at most {MAX_SECONDS} seconds")));
        }
        if rule.cooldown.is_some_and(|s| s > MAX_SECONDS) {
            return Err(invalid(
                "cooldown",
                format!("at most {MAX_SECONDS} seconds"),
            ));
        }
        Ok(CompiledRule { rule, id })
    }

    fn numeric(&self) -> bool {
        self.rule.above.is_some() || self.rule.below.is_some()
    }

    fn inside(&self, v: f64) -> bool {
        self.rule.above.is_none_or(|a| v > a) && self.rule.below.is_none_or(|b| v < b)
    }

    fn rearmed(&self, v: f64) -> bool {
        let h = self.rule.hysteresis.unwrap_or(0.0);
        self.rule.above.is_some_and(|a| v <= a - h) || self.rule.below.is_some_and(|b| v >= b + h)
    }

    /// The value a rule looks at: the attribute's (strings unquoted) or the state string.
    fn watched(&self, state: Option<&State>) -> Option<String> {
        let state = state?;
        match &self.rule.attribute {
            Some(attr) => match state.attributes.get(attr)? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            },
            None => Some(state.state.clone()),
        }
    }

    fn number(&self, state: Option<&State>) -> Option<f64> {
        self.watched(state)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    }

    fn selects(&self, entity_id: &str, locator: &dyn EntityLocator) -> bool {
        let id_ok = match &self.id {
            IdSelector::Any => true,
            IdSelector::Exact(id) => id == entity_id,
            IdSelector::Glob(g) => g.is_match(entity_id),
        };
        id_ok
            && self
                .rule
                .domain
                .as_deref()
                .is_none_or(|d| entity_id.split_once('.').is_some_and(|(ed, _)| ed == d))
            && self
                .rule
                .area
                .as_deref()
                .is_none_or(|a| locator.area_of(entity_id).as_deref() == Some(a))
            && self
                .rule
                .device
                .as_deref()
                .is_none_or(|d| locator.device_of(entity_id).as_deref() == Some(d))
    }
}

/// Validates every rule of a target; the error names `rules[i].field`.
pub(crate) fn compile_rules(rules: &[Rule]) -> Result<Vec<CompiledRule>, (String, String)> {
    if rules.len() > MAX_RULES {
        return Err(("rules".into(), format!("at most {MAX_RULES} rules")));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            CompiledRule::new(r.clone()).map_err(|e| (format!("rules[{i}].{}", e.field), e.message))
        })
        .collect()
}

/// Where entities are: area and device, from the registry catalog (or a map in tests).
pub(crate) trait EntityLocator {
    /// The entity's area (its own, else its device's).
    fn area_of(&self, entity_id: &str) -> Option<String>;
    /// The entity's device.
    fn device_of(&self, entity_id: &str) -> Option<String>;
}

/// Knows nothing: area and device selectors never match.
impl EntityLocator for () {
    fn area_of(&self, _: &str) -> Option<String> {
        None
    }
    fn device_of(&self, _: &str) -> Option<String> {
        None
    }
}

impl EntityLocator for crate::registry::Catalog {
    fn area_of(&self, entity_id: &str) -> Option<String> {
        crate::registry::Catalog::area_of(self, entity_id).map(str::to_owned)
    }
    fn device_of(&self, entity_id: &str) -> Option<String> {
        self.entity(entity_id).and_then(|e| e.device_id.clone())
    }
}

impl EntityLocator for HashMap<String, (Option<String>, Option<String>)> {
    fn area_of(&self, entity_id: &str) -> Option<String> {
        self.get(entity_id).and_then(|(a, _)| a.clone())
    }
    fn device_of(&self, entity_id: &str) -> Option<String> {
        self.get(entity_id).and_then(|(_, d)| d.clone())
    }
}

/// The rules of one target.
#[derive(Debug, Clone)]
pub(crate) struct TargetRules {
    /// Target id.
    pub target_id: String,
    /// Changes whenever the target is edited (its state is then reset).
    pub version: i64,
    /// The rules.
    pub rules: Vec<CompiledRule>,
}

/// A rule that fired.
#[derive(Debug, Clone)]
pub(crate) struct Match {
    /// Target id.
    pub target_id: String,
    /// Index of the rule in the target's list.
    pub rule_index: usize,
    /// The rule.
    pub rule: Rule,
    /// The event that matched (for `for` rules: the one that started the hold).
    pub event: Arc<LiveEvent>,
    /// When the rule fired.
    pub fired_at: DateTime<Utc>,
}

type Key = (String, usize, String);

#[derive(Debug, Clone)]
struct Pending {
    due: DateTime<Utc>,
    event: Arc<LiveEvent>,
}

/// What the engine remembers per (target, rule, entity).
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleState {
    /// Numeric rules: whether a crossing may fire.
    armed: bool,
    /// The last match, for the cooldown.
    last_fired: Option<DateTime<Utc>>,
    /// A `for` hold under way.
    pending: Option<Pending>,
}

/// Counters of what the engine decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct EngineStats {
    /// Matches (fired rules).
    pub matched: u64,
    /// Matches suppressed by a cooldown.
    pub suppressed_cooldown: u64,
    /// `for` holds cancelled because the condition stopped holding.
    pub holds_cancelled: u64,
}

/// Evaluates every target's rules against events; owns all rule state.
#[derive(Debug, Default)]
pub(crate) struct RuleEngine {
    targets: Vec<TargetRules>,
    states: HashMap<Key, RuleState>,
    timers: BTreeSet<(DateTime<Utc>, Key)>,
    stats: EngineStats,
}

impl RuleEngine {
    /// An engine with these targets.
    pub(crate) fn new(targets: Vec<TargetRules>) -> Self {
        let mut engine = RuleEngine::default();
        engine.set_targets(targets);
        engine
    }

    /// Replaces the targets; the state of targets that are gone or changed is dropped.
    pub(crate) fn set_targets(&mut self, targets: Vec<TargetRules>) {
        let keep: HashSet<(String, i64)> = targets
            .iter()
            .map(|t| (t.target_id.clone(), t.version))
            .collect();
        let old: HashMap<String, i64> = self
            .targets
            .iter()
            .map(|t| (t.target_id.clone(), t.version))
            .collect();
        let stale = |id: &str| {
            old.get(id)
                .is_none_or(|v| !keep.contains(&(id.to_owned(), *v)))
        };
        self.states.retain(|(t, _, _), _| !stale(t));
        self.timers.retain(|(_, (t, _, _))| !stale(t));
        self.targets = targets;
    }

    /// Whether no target has rules.
    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// What the engine decided so far.
    pub(crate) fn stats(&self) -> EngineStats {
        self.stats
    }

    /// When the next `for` hold ends.
    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Rule states held (for bounds and tests).
    #[cfg(test)]
    pub(crate) fn state_count(&self) -> usize {
        self.states.len()
    }

    /// Applies one event at `now`; returns the rules that fired.
    pub(crate) fn evaluate(
        &mut self,
        event: &Arc<LiveEvent>,
        now: DateTime<Utc>,
        locator: &dyn EntityLocator,
    ) -> Vec<Match> {
        let mut out = Vec::new();
        let entity = event.entity_id.as_str();
        for t in 0..self.targets.len() {
            for r in 0..self.targets[t].rules.len() {
                let rule = &self.targets[t].rules[r];
                if !rule.selects(entity, locator) {
                    continue;
                }
                let rule = rule.clone();
                let key: Key = (self.targets[t].target_id.clone(), r, entity.to_owned());
                self.step(&rule, key, event, now, &mut out);
            }
        }
        out
    }

    fn cancel(&mut self, key: &Key) {
        if let Some(state) = self.states.get_mut(key)
            && let Some(p) = state.pending.take()
        {
            self.timers.remove(&(p.due, key.clone()));
            self.stats.holds_cancelled += 1;
        }
    }

    fn step(
        &mut self,
        rule: &CompiledRule,
        key: Key,
        event: &Arc<LiveEvent>,
        now: DateTime<Utc>,
        out: &mut Vec<Match>,
    ) {
        let Some(new) = event.new_state.as_deref() else {
            // the entity was removed: forget it
            self.cancel(&key);
            self.states.remove(&key);
            return;
        };
        let Some(old) = event.old_state.as_deref() else {
            // first sight of the entity (a new entity, or every entity in HomeIQ's start-up
            // snapshot): remember where a numeric value is, never fire
            if rule.numeric() {
                let armed = !rule.number(Some(new)).is_some_and(|v| rule.inside(v));
                self.states.entry(key).or_default().armed = armed;
            }
            return;
        };
        let old = Some(old);
        // a hold ends as soon as the condition stops: any change of the watched value, or a value out
        // of range, cancels it, so a due timer needs no second check
        let fire = if rule.numeric() {
            let old_v = rule.number(old);
            let new_v = rule.number(Some(new));
            let state = self.states.entry(key.clone()).or_insert_with(|| RuleState {
                armed: !old_v.is_some_and(|v| rule.inside(v)),
                ..RuleState::default()
            });
            let mut fire = false;
            if let Some(v) = new_v {
                if state.armed && rule.inside(v) {
                    state.armed = false;
                    fire = true;
                } else if !state.armed && rule.rearmed(v) {
                    state.armed = true;
                }
            }
            if state.pending.is_some() && !new_v.is_some_and(|v| rule.inside(v)) {
                self.cancel(&key);
            }
            fire
        } else {
            let old_w = rule.watched(old);
            let new_w = rule.watched(Some(new));
            if old_w == new_w {
                // nothing this rule watches changed (an attribute-only update): a hold goes on
                return;
            }
            self.cancel(&key);
            rule.rule
                .to
                .as_ref()
                .is_none_or(|to| new_w.as_ref() == Some(to))
                && rule
                    .rule
                    .from
                    .as_ref()
                    .is_none_or(|from| old_w.as_ref() == Some(from))
        };
        if !fire {
            return;
        }
        match rule.rule.for_secs.filter(|s| *s > 0) {
            Some(secs) => {
                let due = now + TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2));
                let state = self.states.entry(key.clone()).or_default();
                state.pending = Some(Pending {
                    due,
                    event: event.clone(),
                });
                self.timers.insert((due, key));
            }
            None => self.fire(rule, key, event.clone(), now, out),
        }
    }

    fn fire(
        &mut self,
        rule: &CompiledRule,
        key: Key,
        event: Arc<LiveEvent>,
        now: DateTime<Utc>,
        out: &mut Vec<Match>,
    ) {
        let state = self.states.entry(key.clone()).or_default();
        let cooldown = TimeDelta::seconds(rule.rule.cooldown.unwrap_or(0) as i64);
        if state
            .last_fired
            .is_some_and(|last| now < last + cooldown && cooldown > TimeDelta::zero())
        {
            self.stats.suppressed_cooldown += 1;
            return;
        }
        state.last_fired = Some(now);
        self.stats.matched += 1;
        out.push(Match {
            target_id: key.0,
            rule_index: key.1,
            rule: rule.rule.clone(),
            event,
            fired_at: now,
        });
    }

    /// The `for` holds that ended by `now` and still held: their matches.
    pub(crate) fn due(&mut self, now: DateTime<Utc>) -> Vec<Match> {
        let mut out = Vec::new();
        while let Some((at, key)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, key.clone()));
            let Some(pending) = self.states.get_mut(&key).and_then(|s| s.pending.take()) else {
                continue;
            };
            let rule = self
                .targets
                .iter()
                .find(|t| t.target_id == key.0)
                .and_then(|t| t.rules.get(key.1))
                .cloned();
            if let Some(rule) = rule {
                self.fire(&rule, key, pending.event, at, &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        t0() + TimeDelta::seconds(secs)
    }

    fn state(entity: &str, value: &str, attrs: Value) -> Arc<State> {
        Arc::new(State {
            entity_id: entity.into(),
            state: value.into(),
            attributes: attrs.as_object().cloned().unwrap_or_default(),
            last_changed: t0(),
            last_updated: t0(),
            last_reported: None,
            context: None,
        })
    }

    /// Replays `values` of one entity (each with attributes `{}`), one second apart starting at
    /// `start`, and returns the seconds at which a rule fired.
    struct Replay {
        engine: RuleEngine,
        entity: String,
        last: Option<Arc<State>>,
    }

    impl Replay {
        fn new(entity: &str, rules: Vec<Rule>) -> Self {
            let rules = compile_rules(&rules).expect("valid rules");
            Replay {
                engine: RuleEngine::new(vec![TargetRules {
                    target_id: "t".into(),
                    version: 1,
                    rules,
                }]),
                entity: entity.into(),
                last: None,
            }
        }

        fn with_initial(mut self, value: &str) -> Self {
            self.last = Some(state(&self.entity, value, json!({})));
            self
        }

        fn set(&mut self, secs: i64, value: &str, attrs: Value) -> Vec<Match> {
            let new = state(&self.entity, value, attrs);
            let event = Arc::new(LiveEvent {
                entity_id: self.entity.clone(),
                old_state: self.last.replace(new.clone()),
                new_state: Some(new),
                time_fired: at(secs),
                origin: crate::store::origin::Origin::unknown(),
            });
            let mut m = self.engine.due(at(secs));
            m.extend(self.engine.evaluate(&event, at(secs), &()));
            m
        }

        /// Feeds `(second, value)` and returns the seconds at which something fired (timers are
        /// checked at every listed second too).
        fn run(&mut self, seq: &[(i64, &str)]) -> Vec<i64> {
            let mut fired = Vec::new();
            for (secs, value) in seq {
                for m in self.set(*secs, value, json!({})) {
                    fired.push((m.fired_at - t0()).num_seconds());
                }
            }
            fired
        }
    }

    fn rule(v: Value) -> Rule {
        serde_json::from_value(v).expect("rule")
    }

    #[test]
    fn state_to_from_fires_on_changes_only() {
        let mut r = Replay::new(
            "light.a",
            vec![rule(json!({"entity_id": "light.a", "to": "on"}))],
        )
        .with_initial("off");
        assert_eq!(
            r.run(&[(1, "on"), (2, "on"), (3, "off"), (4, "on")]),
            vec![1, 4]
        );
        // attribute-only updates are no state change
        assert!(r.set(5, "on", json!({"brightness": 10})).is_empty());

        let mut r = Replay::new(
            "light.a",
            vec![rule(
                json!({"entity_id": "light.a", "from": "on", "to": "off"}),
            )],
        )
        .with_initial("unavailable");
        assert_eq!(
            r.run(&[
                (1, "off"),
                (2, "on"),
                (3, "unavailable"),
                (4, "off"),
                (5, "on"),
                (6, "off")
            ]),
            vec![6]
        );
    }

    #[test]
    fn numeric_crossings_with_hysteresis() {
        let seq = [
            (1, "24"),
            (2, "25.5"), // crosses 25: fires
            (3, "26"),   // stays above: no
            (4, "24.5"), // back below 25 but within hysteresis: still disarmed
            (5, "25.2"), // no re-fire
            (6, "23.9"), // <= 24: re-armed
            (7, "unavailable"),
            (8, "30"), // fires
            (9, "unavailable"),
            (10, "30"), // unavailable does not re-arm
        ];
        let mut r = Replay::new(
            "sensor.t",
            vec![rule(
                json!({"entity_id": "sensor.t", "above": 25, "hysteresis": 1}),
            )],
        )
        .with_initial("20");
        assert_eq!(r.run(&seq), vec![2, 8]);

        // without hysteresis the dip to 24.5 re-arms
        let mut r = Replay::new(
            "sensor.t",
            vec![rule(json!({"entity_id": "sensor.t", "above": 25}))],
        )
        .with_initial("20");
        assert_eq!(r.run(&seq), vec![2, 5, 8]);

        // below with hysteresis
        let mut r = Replay::new(
            "sensor.t",
            vec![rule(
                json!({"entity_id": "sensor.t", "below": 10, "hysteresis": 2}),
            )],
        )
        .with_initial("15");
        assert_eq!(
            r.run(&[(1, "9"), (2, "11"), (3, "9"), (4, "12"), (5, "8")]),
            vec![1, 5]
        );

        // an entity already in range when first seen does not fire
        let mut r = Replay::new(
            "sensor.t",
            vec![rule(json!({"entity_id": "sensor.t", "above": 25}))],
        )
        .with_initial("30");
        assert_eq!(r.run(&[(1, "31"), (2, "20"), (3, "26")]), vec![3]);

        // a range: inside (10, 20)
        let mut r = Replay::new(
            "sensor.t",
            vec![rule(
                json!({"entity_id": "sensor.t", "above": 10, "below": 20}),
            )],
        )
        .with_initial("5");
        assert_eq!(
            r.run(&[
                (1, "15"),
                (2, "25"),
                (3, "19"),
                (4, "12"),
                (5, "9"),
                (6, "11")
            ]),
            vec![1, 3, 6]
        );
    }

    #[test]
    fn first_sight_primes_without_firing() {
        let rules = vec![
            rule(json!({"entity_id": "sensor.t", "to": "30"})),
            rule(json!({"entity_id": "sensor.t", "above": 25})),
        ];
        // no old state: the start-up snapshot (or a new entity) primes only
        let mut r = Replay::new("sensor.t", rules.clone());
        assert!(r.set(0, "30", json!({})).is_empty());
        // already above 25: no crossing until it went below
        assert!(r.set(1, "31", json!({})).is_empty());
        assert!(r.set(2, "20", json!({})).is_empty());
        let fired: Vec<usize> = r
            .set(3, "30", json!({}))
            .iter()
            .map(|m| m.rule_index)
            .collect();
        assert_eq!(fired, vec![0, 1]);
        // primed below the threshold: the next crossing fires
        let mut r = Replay::new("sensor.t", rules);
        assert!(r.set(0, "20", json!({})).is_empty());
        assert_eq!(r.set(1, "26", json!({})).len(), 1);
    }

    #[test]
    fn for_holds_and_cancels() {
        let mut r = Replay::new(
            "binary_sensor.door",
            vec![rule(
                json!({"entity_id": "binary_sensor.door", "to": "on", "for": 10}),
            )],
        )
        .with_initial("off");
        // on at 1, off at 5: cancelled; on at 6, still on at 16: fires at 16 (the due time)
        assert_eq!(
            r.run(&[(1, "on"), (5, "off"), (6, "on"), (12, "on"), (20, "off")]),
            vec![16]
        );
        assert_eq!(r.engine.stats().holds_cancelled, 1);
        assert_eq!(r.engine.next_due(), None);
        // attribute updates during the hold do not cancel it
        r.set(30, "on", json!({}));
        r.set(35, "on", json!({"battery": 5}));
        assert_eq!(r.engine.next_due(), Some(at(40)));
        let fired = r.engine.due(at(40));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].event.time_fired, at(30));

        // numeric for: must stay in range
        let mut r = Replay::new(
            "sensor.t",
            vec![rule(
                json!({"entity_id": "sensor.t", "above": 25, "for": 5}),
            )],
        )
        .with_initial("20");
        assert_eq!(
            r.run(&[
                (1, "26"),
                (3, "20"),
                (4, "27"),
                (6, "28"),
                (9, "29"),
                (10, "29")
            ]),
            vec![9]
        );
    }

    #[test]
    fn cooldown_suppresses_repeats_per_entity() {
        let rules = vec![rule(
            json!({"entity_id": "light.*", "to": "on", "cooldown": 60}),
        )];
        let mut r = Replay::new("light.a", rules.clone()).with_initial("off");
        assert_eq!(
            r.run(&[
                (0, "on"),
                (10, "off"),
                (20, "on"), // within 60 s: suppressed
                (30, "off"),
                (61, "on"), // after the cooldown
            ]),
            vec![0, 61]
        );
        assert_eq!(r.engine.stats().suppressed_cooldown, 1);
        // the cooldown is per entity: another light fires at once
        let event = Arc::new(LiveEvent {
            entity_id: "light.b".into(),
            old_state: Some(state("light.b", "off", json!({}))),
            new_state: Some(state("light.b", "on", json!({}))),
            time_fired: at(62),
            origin: crate::store::origin::Origin::unknown(),
        });
        assert_eq!(r.engine.evaluate(&event, at(62), &()).len(), 1);
    }

    #[test]
    fn attribute_rules_watch_one_attribute() {
        let mut r = Replay::new(
            "climate.x",
            vec![rule(
                json!({"entity_id": "climate.x", "attribute": "hvac_action"}),
            )],
        );
        r.last = Some(state("climate.x", "heat", json!({"hvac_action": "idle"})));
        assert!(
            r.set(1, "heat", json!({"hvac_action": "idle", "t": 1}))
                .is_empty()
        );
        assert_eq!(r.set(2, "heat", json!({"hvac_action": "heating"})).len(), 1);
        assert!(
            r.set(3, "off", json!({"hvac_action": "heating"}))
                .is_empty()
        );

        let mut r = Replay::new(
            "light.l",
            vec![rule(
                json!({"entity_id": "light.l", "attribute": "brightness", "above": 200}),
            )],
        );
        r.last = Some(state("light.l", "on", json!({"brightness": 100})));
        assert!(r.set(1, "on", json!({"brightness": 150})).is_empty());
        assert_eq!(r.set(2, "on", json!({"brightness": 255})).len(), 1);
    }

    #[test]
    fn selectors_domain_area_device_glob() {
        let mut locator: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
        locator.insert(
            "light.k".into(),
            (Some("kitchen".into()), Some("dev1".into())),
        );
        let rules = compile_rules(&[
            rule(json!({"domain": "light", "area": "kitchen"})),
            rule(json!({"device": "dev1"})),
            rule(json!({"entity_id": "sensor.*_power"})),
        ])
        .expect("valid");
        let mut engine = RuleEngine::new(vec![TargetRules {
            target_id: "t".into(),
            version: 1,
            rules,
        }]);
        let ev = |id: &str| {
            Arc::new(LiveEvent {
                entity_id: id.into(),
                old_state: Some(state(id, "1", json!({}))),
                new_state: Some(state(id, "2", json!({}))),
                time_fired: t0(),
                origin: crate::store::origin::Origin::unknown(),
            })
        };
        let fired = |engine: &mut RuleEngine, id: &str| -> Vec<usize> {
            engine
                .evaluate(&ev(id), t0(), &locator)
                .iter()
                .map(|m| m.rule_index)
                .collect()
        };
        assert_eq!(fired(&mut engine, "light.k"), vec![0, 1]);
        assert_eq!(fired(&mut engine, "light.other"), Vec::<usize>::new());
        assert_eq!(fired(&mut engine, "sensor.oven_power"), vec![2]);
        assert_eq!(
            fired(&mut engine, "sensor.oven_energy"),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn reload_keeps_state_of_unchanged_targets_only() {
        let rules = compile_rules(&[rule(
            json!({"entity_id": "sensor.t", "above": 5, "for": 10}),
        )])
        .expect("valid");
        let target = |v| TargetRules {
            target_id: "t".into(),
            version: v,
            rules: rules.clone(),
        };
        let mut engine = RuleEngine::new(vec![target(1)]);
        let event = Arc::new(LiveEvent {
            entity_id: "sensor.t".into(),
            old_state: Some(state("sensor.t", "1", json!({}))),
            new_state: Some(state("sensor.t", "9", json!({}))),
            time_fired: t0(),
            origin: crate::store::origin::Origin::unknown(),
        });
        assert!(engine.evaluate(&event, t0(), &()).is_empty());
        assert!(engine.next_due().is_some());
        engine.set_targets(vec![target(1)]);
        assert!(engine.next_due().is_some());
        engine.set_targets(vec![target(2)]);
        assert_eq!(engine.next_due(), None);
        assert_eq!(engine.state_count(), 0);
    }

    #[test]
    fn validation_names_the_field() {
        let field = |v: Value| {
            compile_rules(&[rule(json!({"entity_id": "light.a"})), rule(v)])
                .err()
                .map(|(f, _)| f)
        };
        assert_eq!(field(json!({})), Some("rules[1].entity_id".into()));
        assert_eq!(
            field(json!({"entity_id": "Not An Id"})),
            Some("rules[1].entity_id".into())
        );
        assert_eq!(
            field(json!({"entity_id": "sensor.[", "above": 1})),
            Some("rules[1].entity_id".into())
        );
        assert_eq!(
            field(json!({"entity_id": "sensor.a", "above": 5, "below": 1})),
            Some("rules[1].below".into())
        );
        assert_eq!(
            field(json!({"entity_id": "sensor.a", "hysteresis": 1})),
            Some("rules[1].hysteresis".into())
        );
        assert_eq!(
            field(json!({"entity_id": "sensor.a", "above": 1, "to": "x"})),
            Some("rules[1].to".into())
        );
        assert_eq!(
            field(json!({"entity_id": "sensor.a", "for": 999_999_999})),
            Some("rules[1].for".into())
        );
        assert_eq!(field(json!({"domain": "light", "to": "on"})), None);
    }
}
