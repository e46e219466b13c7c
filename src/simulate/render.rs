//! Hand-written JSON rendering for the hot path: states, `state_changed` events, timestamps and
//! context ids are written straight into strings, without building `serde_json::Value` trees.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value, json};

use super::HaVersion;
use super::home::Home;
use crate::ha::model::RegistryKind;

/// Appends `s` as a JSON string literal (quoted and escaped).
pub(crate) fn push_str_lit(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends an optional string as a JSON literal or `null`.
pub(crate) fn push_opt_lit(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str_lit(out, s),
        None => out.push_str("null"),
    }
}

/// Appends an instant (µs since the epoch) the way Home Assistant writes datetimes:
/// `2025-04-01T10:00:00.123456+00:00`.
pub(crate) fn push_iso(out: &mut String, us: i64) {
    let t = DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default();
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        us.rem_euclid(1_000_000)
    );
}

/// An instant (µs) as Home Assistant's ISO string.
pub(crate) fn iso(us: i64) -> String {
    let mut s = String::with_capacity(32);
    push_iso(&mut s, us);
    s
}

/// Appends an instant (µs) as Unix seconds with a fraction, as the recorder's compressed history
/// does (`1795445269.250235`).
pub(crate) fn push_unix_secs(out: &mut String, us: i64) {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    if frac == 0 {
        let _ = write!(out, "{secs}.0");
    } else {
        let mut digits = format!("{frac:06}");
        while digits.ends_with('0') {
            digits.pop();
        }
        let _ = write!(out, "{secs}.{digits}");
    }
}

/// Crockford's base32 alphabet used by ULIDs.
const ULID_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID-shaped context id (26 characters): 48 bits of milliseconds and 80 bits of `entropy`.
pub(crate) fn ulid(ms: i64, entropy: u128) -> String {
    let value: u128 = ((ms.max(0) as u128 & 0xFFFF_FFFF_FFFF) << 80) | (entropy & ((1 << 80) - 1));
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 125 - 5 * i as u32;
        let idx = if shift >= 128 {
            0
        } else {
            ((value >> shift) & 0x1F) as usize
        };
        *slot = ULID_ALPHABET[idx];
    }
    // the first character holds the top 3 bits only
    out[0] = ULID_ALPHABET[((value >> 125) & 0x7) as usize];
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends a context object: `{"id":…,"parent_id":…,"user_id":…}`.
pub(crate) fn push_context(out: &mut String, id: &str, parent: Option<&str>, user: Option<&str>) {
    out.push_str("{\"id\":");
    push_str_lit(out, id);
    out.push_str(",\"parent_id\":");
    push_opt_lit(out, parent);
    out.push_str(",\"user_id\":");
    push_opt_lit(out, user);
    out.push('}');
}

/// A successful command result frame.
pub(crate) fn result_ok(id: u64, result_json: &str) -> String {
    let mut s = String::with_capacity(48 + result_json.len());
    let _ = write!(
        s,
        "{{\"id\":{id},\"type\":\"result\",\"success\":true,\"result\":"
    );
    s.push_str(result_json);
    s.push('}');
    s
}

/// A failed command result frame.
pub(crate) fn result_err(id: Option<u64>, code: &str, message: &str) -> String {
    let mut s = String::with_capacity(96 + message.len());
    match id {
        Some(id) => {
            let _ = write!(s, "{{\"id\":{id},");
        }
        None => s.push_str("{\"id\":null,"),
    }
    s.push_str("\"type\":\"result\",\"success\":false,\"error\":{\"code\":");
    push_str_lit(&mut s, code);
    s.push_str(",\"message\":");
    push_str_lit(&mut s, message);
    s.push_str("}}");
    s
}

/// An event message for subscription `id` wrapping a pre-rendered event body.
pub(crate) fn event_message(out: &mut String, id: u64, body: &str) {
    let _ = write!(out, "{{\"id\":{id},\"type\":\"event\",\"event\":");
    out.push_str(body);
    out.push('}');
}

/// Keys of a 2026 child device's reduced row.
const CHILD_DEVICE_KEYS: [&str; 10] = [
    "area_id",
    "created_at",
    "disabled_by",
    "id",
    "identifiers",
    "labels",
    "modified_at",
    "name",
    "name_by_user",
    "parent_device_id",
];

/// The name a device row shows (the user's, else the integration's).
fn device_name(row: &Value) -> Option<&str> {
    row["name_by_user"].as_str().or(row["name"].as_str())
}

/// `name` without a leading `prefix` and a space, if it starts with them and more follows.
fn strip_name_prefix<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(' '))
        .filter(|rest| !rest.is_empty())
}

/// A device row (kept in the 2025 shape) as `version` sends it.
pub(crate) fn device_row(home: &Home, row: &Value, version: HaVersion) -> Value {
    if version == HaVersion::V2025_4 {
        return row.clone();
    }
    let id = row["id"].as_str().unwrap_or_default();
    let config_entry = row["primary_config_entry"].clone();
    let Some(parent) = home.parent_of.get(id) else {
        let mut out = row.clone();
        out["config_entry_id"] = config_entry;
        out["config_subentry_id"] = Value::Null;
        out["parent_device_id"] = Value::Null;
        return out;
    };
    let mut out = Map::new();
    for key in CHILD_DEVICE_KEYS {
        out.insert(key.to_owned(), row.get(key).cloned().unwrap_or(Value::Null));
    }
    out.insert("config_entry_id".into(), config_entry);
    out.insert("config_subentry_id".into(), Value::Null);
    out.insert("parent_device_id".into(), json!(parent));
    // a child is named without its parent's name (Home Assistant puts the two together)
    let parent_name = home
        .devices
        .iter()
        .find(|d| d["id"] == parent.as_str())
        .and_then(device_name);
    if let (Some(name), Some(parent_name)) = (row["name"].as_str(), parent_name)
        && let Some(own) = strip_name_prefix(name, parent_name)
    {
        out.insert("name".into(), json!(own));
    }
    Value::Object(out)
}

/// An entity registry row (kept in the 2025 shape) as `version` sends it.
pub(crate) fn entity_row(home: &Home, row: &Value, version: HaVersion) -> Value {
    if version == HaVersion::V2025_4 {
        return row.clone();
    }
    let device = row["device_id"]
        .as_str()
        .and_then(|d| home.devices.iter().find(|r| r["id"] == d))
        .and_then(device_name);
    entity_row_2026(row, device)
}

/// An entity registry row as 2026 sends it; `device` is the name of the entity's device.
fn entity_row_2026(row: &Value, device: Option<&str>) -> Value {
    let mut out = row.clone();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    let legacy = obj.remove("has_entity_name") == Some(Value::Bool(false));
    obj.insert("next_name_part".into(), Value::Null);
    // `original_name` no longer starts with the device's name
    if legacy
        && let (Some(original), Some(device)) = (row["original_name"].as_str(), device)
        && let Some(own) = strip_name_prefix(original, device)
    {
        obj.insert("original_name".into(), json!(own));
    }
    out
}

/// The reply of `config/<kind>_registry/list` as `version` sends it.
pub(crate) fn registry_list(home: &Home, kind: RegistryKind, version: HaVersion) -> String {
    if version == HaVersion::V2025_4 {
        return as_json(match kind {
            RegistryKind::Device => &home.devices,
            RegistryKind::Entity => &home.entities,
            RegistryKind::Area => &home.areas,
            RegistryKind::Floor => &home.floors,
            RegistryKind::Label => &home.labels,
        });
    }
    match kind {
        RegistryKind::Device => {
            let rows = home.devices.iter().map(|r| device_row(home, r, version));
            Value::Array(rows.collect()).to_string()
        }
        RegistryKind::Entity => {
            let names: HashMap<&str, &str> = home
                .devices
                .iter()
                .filter_map(|d| Some((d["id"].as_str()?, device_name(d)?)))
                .collect();
            let rows = home.entities.iter().map(|r| {
                let device = r["device_id"].as_str().and_then(|d| names.get(d).copied());
                entity_row_2026(r, device)
            });
            Value::Array(rows.collect()).to_string()
        }
        RegistryKind::Area => as_json(&home.areas),
        RegistryKind::Floor => as_json(&home.floors),
        RegistryKind::Label => as_json(&home.labels),
    }
}

fn as_json(rows: &[Value]) -> String {
    serde_json::to_string(rows).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lists_of_2026_decode_without_made_up_fields() {
        use crate::registry::record::{Device, EntityEntry};
        let home = super::super::home::generate(super::super::Profile::Medium, 5, 0);
        let list = |kind, version| registry_list(&home, kind, version);
        let entities = |v| -> Vec<EntityEntry> {
            serde_json::from_str(&list(RegistryKind::Entity, v)).expect("entities")
        };
        let devices = |v| -> Vec<Device> {
            serde_json::from_str(&list(RegistryKind::Device, v)).expect("devices")
        };
        assert!(
            entities(HaVersion::V2025_4)
                .iter()
                .all(|e| e.has_entity_name.is_some())
        );
        let new = entities(HaVersion::V2026_11);
        assert!(new.iter().all(|e| e.has_entity_name.is_none()));
        assert!(
            new.iter()
                .any(|e| e.original_name.as_deref() == Some("Battery"))
        );
        let old_devices = devices(HaVersion::V2025_4);
        let new_devices = devices(HaVersion::V2026_11);
        assert!(old_devices.iter().all(|d| d.config_entries.is_some()));
        let children: Vec<&Device> = new_devices
            .iter()
            .filter(|d| d.parent_device_id.is_some())
            .collect();
        assert_eq!(children.len(), 3);
        for child in children {
            assert_eq!(child.config_entries, None);
            assert_eq!(child.manufacturer, None);
            assert!(
                child
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("Phase "))
            );
            assert!(child.config_entry_id.is_some());
        }
        // the same registry ids in both
        let ids = |d: &[Device]| d.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&old_devices), ids(&new_devices));
    }

    #[test]
    fn strings_escape_like_json() {
        for s in ["plain", "a\"b\\c", "line\nbreak\t\u{1}", "ünï ✓"] {
            let mut out = String::new();
            push_str_lit(&mut out, s);
            let back: String = serde_json::from_str(&out).expect("valid JSON");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn timestamps_round_trip_to_the_microsecond() {
        let us = 1_795_445_269_250_235;
        let t = DateTime::parse_from_rfc3339(&iso(us)).expect("rfc3339");
        assert_eq!(t.timestamp_micros(), us);
        assert!(iso(us).ends_with("+00:00"));
        let mut s = String::new();
        push_unix_secs(&mut s, us);
        assert_eq!(s, "1795445269.250235");
        let back = crate::ingest::backfill::timestamp_to_datetime(&s).expect("ts");
        assert_eq!(back.timestamp_micros(), us);
        s.clear();
        push_unix_secs(&mut s, 1_000_000);
        assert_eq!(s, "1.0");
    }

    #[test]
    fn ulids_have_26_crockford_characters_and_sort_by_time() {
        let a = ulid(1_700_000_000_000, 5);
        let b = ulid(1_700_000_000_001, 0);
        assert_eq!(a.len(), 26);
        assert!(a.bytes().all(|c| ULID_ALPHABET.contains(&c)));
        assert!(a < b);
    }

    #[test]
    fn result_frames_are_valid_json() {
        let ok: serde_json::Value = serde_json::from_str(&result_ok(3, "[1]")).expect("json");
        assert_eq!(ok["success"], true);
        let err: serde_json::Value =
            serde_json::from_str(&result_err(Some(4), "id_reuse", "x\"y")).expect("json");
        assert_eq!(err["error"]["code"], "id_reuse");
    }
}
