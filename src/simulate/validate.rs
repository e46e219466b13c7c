//! `validate_config` as Home Assistant answers it: for each of `triggers`, `conditions` and
//! `actions` given (or their singular forms), `{"valid": bool, "error": null | message}`. The
//! simulator checks what HA's schemas check first — every item is a mapping, a trigger names a
//! platform HA has, a condition a kind, an action a `domain.service` or a script step, a device
//! trigger or action a device of the home — with HA's wording; like HA, it never checks that an
//! entity exists (HomeIQ does that itself before deploying).

use serde_json::{Value, json};

/// Trigger platforms of Home Assistant's core and the demo's integrations.
const TRIGGERS: &[&str] = &[
    "calendar",
    "conversation",
    "device",
    "event",
    "geo_location",
    "homeassistant",
    "mqtt",
    "numeric_state",
    "persistent_notification",
    "state",
    "sun",
    "tag",
    "template",
    "time",
    "time_pattern",
    "webhook",
    "zone",
];

/// Condition kinds.
const CONDITIONS: &[&str] = &[
    "and",
    "device",
    "not",
    "numeric_state",
    "or",
    "state",
    "sun",
    "template",
    "time",
    "trigger",
    "zone",
];

/// Script steps that are not service calls.
const STEPS: &[&str] = &[
    "choose",
    "condition",
    "delay",
    "device_id",
    "event",
    "if",
    "parallel",
    "repeat",
    "scene",
    "sequence",
    "stop",
    "variables",
    "wait_for_trigger",
    "wait_template",
];

/// The answer to one `validate_config` command; `device_known` says whether a device id is
/// one of the home's.
pub(crate) fn validate_config(msg: &Value, device_known: &dyn Fn(&str) -> bool) -> Value {
    let mut out = serde_json::Map::new();
    for (key, singular, check) in [
        ("triggers", "trigger", trigger as Check),
        ("conditions", "condition", condition as Check),
        ("actions", "action", action as Check),
    ] {
        let Some(part) = msg.get(key).or_else(|| msg.get(singular)) else {
            continue;
        };
        let verdict = match items(part)
            .and_then(|items| items.iter().try_for_each(|item| check(item, device_known)))
        {
            Ok(()) => json!({"valid": true, "error": null}),
            Err(e) => json!({"valid": false, "error": e}),
        };
        out.insert(key.to_owned(), verdict);
    }
    Value::Object(out)
}

type Check = fn(&Value, &dyn Fn(&str) -> bool) -> Result<(), String>;

/// A part as a list of items (HA takes one mapping as a list of one).
fn items(part: &Value) -> Result<Vec<&Value>, String> {
    match part {
        Value::Array(a) => Ok(a.iter().collect()),
        Value::Object(_) => Ok(vec![part]),
        _ => Err("expected a dictionary".into()),
    }
}

fn mapping(item: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    item.as_object()
        .ok_or_else(|| "expected a dictionary".to_owned())
}

fn device(
    item: &serde_json::Map<String, Value>,
    known: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let id = item.get("device_id").and_then(Value::as_str).unwrap_or("");
    if known(id) {
        Ok(())
    } else {
        Err(format!("Unknown device '{id}'"))
    }
}

fn trigger(item: &Value, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let m = mapping(item)?;
    let platform = m
        .get("trigger")
        .or_else(|| m.get("platform"))
        .and_then(Value::as_str)
        .ok_or_else(|| "required key not provided @ data['trigger']".to_owned())?;
    let domain = platform.split('.').next().unwrap_or(platform);
    if !TRIGGERS.contains(&domain) {
        return Err(format!("Invalid trigger '{platform}' specified"));
    }
    match domain {
        "device" => device(m, known),
        "state" | "numeric_state" if !m.contains_key("entity_id") => {
            Err("required key not provided @ data['entity_id']".into())
        }
        "time" if !m.contains_key("at") => Err("required key not provided @ data['at']".into()),
        _ => Ok(()),
    }
}

fn condition(item: &Value, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if item.is_string() {
        return Ok(()); // a template shorthand
    }
    let m = mapping(item)?;
    let kind = m
        .get("condition")
        .and_then(Value::as_str)
        .ok_or_else(|| "required key not provided @ data['condition']".to_owned())?;
    if !CONDITIONS.contains(&kind) {
        return Err(format!("Invalid condition \"{kind}\" specified"));
    }
    if kind == "device" {
        return device(m, known);
    }
    for nested in ["conditions"] {
        if let Some(inner) = m.get(nested) {
            for c in items(inner)? {
                condition(c, known)?;
            }
        }
    }
    Ok(())
}

fn action(item: &Value, known: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let m = mapping(item)?;
    if let Some(service) = m
        .get("action")
        .or_else(|| m.get("service"))
        .and_then(Value::as_str)
    {
        let valid = service.split_once('.').is_some_and(|(d, s)| {
            !d.is_empty() && !s.is_empty() && !s.contains('.') && !d.contains(' ')
        });
        return if valid {
            Ok(())
        } else {
            Err(format!(
                "Service {service} does not match format <domain>.<name> for dictionary value @ data['action']"
            ))
        };
    }
    if m.contains_key("device_id") && m.contains_key("domain") {
        return device(m, known);
    }
    if STEPS.iter().any(|s| m.contains_key(*s)) {
        return Ok(());
    }
    Err("Unable to determine action @ data[0]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(id: &str) -> bool {
        id == "dev1"
    }

    #[test]
    fn valid_parts_pass_and_each_part_is_judged_alone() {
        let ok = validate_config(
            &json!({
                "triggers": [{"trigger": "time", "at": "06:45:00"}],
                "conditions": [{"condition": "time", "weekday": ["mon"]}],
                "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.x"}}],
            }),
            &known,
        );
        for part in ["triggers", "conditions", "actions"] {
            assert_eq!(ok[part]["valid"], true, "{ok}");
            assert!(ok[part]["error"].is_null());
        }
        // only the parts given are answered; an unknown entity is not HA's concern
        let one = validate_config(
            &json!({"trigger": {"platform": "state", "entity_id": "light.nowhere"}}),
            &known,
        );
        assert_eq!(one, json!({"triggers": {"valid": true, "error": null}}));
    }

    #[test]
    fn what_ha_refuses_is_refused_with_its_words() {
        let bad = validate_config(
            &json!({
                "triggers": [{"trigger": "teleport"}],
                "conditions": [{"condition": "device", "device_id": "nope"}],
                "actions": [{"action": "not a service"}],
            }),
            &known,
        );
        assert_eq!(bad["triggers"]["valid"], false);
        assert_eq!(
            bad["triggers"]["error"],
            "Invalid trigger 'teleport' specified"
        );
        assert_eq!(bad["conditions"]["error"], "Unknown device 'nope'");
        assert_eq!(bad["actions"]["valid"], false);
        let device = validate_config(
            &json!({"triggers": [{"trigger": "device", "device_id": "dev1", "domain": "light"}],
                    "actions": "turn it on"}),
            &known,
        );
        assert_eq!(device["triggers"]["valid"], true, "{device}");
        assert_eq!(device["actions"]["error"], "expected a dictionary");
    }
}
