//! Reading automations (pure): which entities and devices one names (with the path to each, for
//! HomeIQ's own check before a deploy), which services it calls on what, and whether an existing
//! automation already covers what a suggestion proposes.
//!
//! Both syntaxes are read: the current one (`triggers`, `trigger:`, `actions`, `action:`) and the
//! older one YAML files still hold (`trigger`, `platform:`, `action`, `service:`).

use serde_json::Value;

/// An entity or device an automation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// `entity_id` or `device_id`.
    pub key: &'static str,
    /// The id named.
    pub id: String,
    /// Where: `actions[0].target.entity_id`.
    pub path: String,
}

/// Every literal entity and device id in `config` (templates are skipped: HA resolves them).
pub(crate) fn references(config: &Value) -> Vec<Reference> {
    let mut out = Vec::new();
    walk_refs(config, String::new(), &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk_refs(v: &Value, path: String, out: &mut Vec<Reference>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = join(&path, k);
                let key = match k.as_str() {
                    "entity_id" => Some("entity_id"),
                    "device_id" => Some("device_id"),
                    _ => None,
                };
                if let Some(key) = key {
                    for (i, id) in strings(child).into_iter().enumerate() {
                        if id.contains("{{") || id.contains("{%") {
                            continue;
                        }
                        let path = if child.is_array() {
                            format!("{here}[{i}]")
                        } else {
                            here.clone()
                        };
                        // `entity_id: all` / `none` are keywords of service targets
                        if key == "entity_id" && matches!(id.as_str(), "all" | "none") {
                            continue;
                        }
                        out.push(Reference { key, id, path });
                    }
                } else {
                    walk_refs(child, here, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk_refs(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A string or a list of strings (a comma-separated string is split, as HA does).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The part of a config under `plural` (current form) or `singular` (older form), as a list.
fn part<'a>(config: &'a Value, plural: &str, singular: &str) -> Vec<&'a Value> {
    match config.get(plural).or_else(|| config.get(singular)) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    }
}

/// A service call and the entities it targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// `light.turn_on`.
    pub service: String,
    /// Entities targeted.
    pub entities: Vec<String>,
}

/// Every service call of the actions (nested `choose`, `if`, `sequence`… included).
pub(crate) fn calls(config: &Value) -> Vec<Call> {
    let mut out = Vec::new();
    for a in part(config, "actions", "action") {
        walk_calls(a, &mut out);
    }
    out
}

fn walk_calls(v: &Value, out: &mut Vec<Call>) {
    match v {
        Value::Object(map) => {
            let service = map
                .get("action")
                .or_else(|| map.get("service"))
                .and_then(Value::as_str)
                .filter(|s| s.contains('.'));
            if let Some(service) = service {
                let mut entities = Vec::new();
                for holder in [Some(v), map.get("target"), map.get("data")]
                    .into_iter()
                    .flatten()
                {
                    if let Some(e) = holder.get("entity_id") {
                        entities.extend(strings(e));
                    }
                }
                out.push(Call {
                    service: service.to_owned(),
                    entities,
                });
            }
            for child in map.values() {
                walk_calls(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|c| walk_calls(c, out)),
        _ => {}
    }
}

/// A trigger: its platform and the entities it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TriggerRef {
    /// `state`, `time`, `sun`…
    pub platform: String,
    /// Entities named.
    pub entities: Vec<String>,
}

/// The triggers of an automation.
pub(crate) fn triggers(config: &Value) -> Vec<TriggerRef> {
    part(config, "triggers", "trigger")
        .into_iter()
        .map(|t| TriggerRef {
            platform: t
                .get("trigger")
                .or_else(|| t.get("platform"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            entities: t.get("entity_id").map(strings).unwrap_or_default(),
        })
        .collect()
}

/// What must start an automation for it to cover a suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// A time of day (`time`, `sun` or `time_pattern` trigger).
    Time,
    /// A change of this entity.
    Entity(String),
}

/// Whether `service` called on an entity does what `wanted` does.
fn same_effect(service: &str, wanted: &str) -> bool {
    if service == wanted {
        return true;
    }
    let (Some((d, s)), Some((wd, ws))) = (service.split_once('.'), wanted.split_once('.')) else {
        return false;
    };
    (s == "toggle" && (d == wd || d == "homeassistant")) || (d == "homeassistant" && s == ws)
}

/// Whether `config` already does what a suggestion proposes: started by `start`, it calls
/// `service` (or a toggle, or `homeassistant.*` alike) on `target`.
pub(crate) fn covers(config: &Value, start: &Start, target: &str, service: &str) -> bool {
    let acts = calls(config)
        .iter()
        .any(|c| c.entities.iter().any(|e| e == target) && same_effect(&c.service, service));
    acts && triggers(config).iter().any(|t| match start {
        Start::Time => matches!(t.platform.as_str(), "time" | "sun" | "time_pattern"),
        Start::Entity(e) => t.entities.iter().any(|x| x == e),
    })
}

/// Whether `config` links `sensor` to any of `targets` (a trigger on the sensor, an action on a
/// target).
pub(crate) fn links(config: &Value, sensor: &str, targets: &[String]) -> bool {
    triggers(config)
        .iter()
        .any(|t| t.entities.iter().any(|e| e == sensor))
        && calls(config)
            .iter()
            .any(|c| c.entities.iter().any(|e| targets.contains(e)))
}
