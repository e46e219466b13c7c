//! Typed forms of what Home Assistant sends: states and `state_changed` events (registry rows are
//! the registry's: [`crate::registry::record`]).
//!
//! Every struct is lenient: unknown fields are ignored and optional fields default, so a newer Home
//! Assistant that adds keys never breaks decoding. Timestamps are decoded as UTC instants. A field
//! Home Assistant may leave out is an `Option` that stays `None` when it is missing, never a
//! made-up default: 2026.x dropped `has_entity_name` from entity rows and lists child devices
//! with a reduced row (no manufacturer, model, connections or config entries).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Attributes of a state, exactly as Home Assistant sent them.
pub(crate) type Attributes = Map<String, Value>;

/// Who or what caused a state change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Context {
    /// Context id (a ULID string).
    #[serde(default)]
    pub id: String,
    /// The context that caused this one, if any.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// The user that caused the change, if any.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// What started a run: an automation or a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunKind {
    /// `automation_triggered`.
    Automation,
    /// `script_started`.
    Script,
}

impl RunKind {
    /// Both kinds.
    pub(crate) const ALL: [RunKind; 2] = [RunKind::Automation, RunKind::Script];

    /// The event type announcing a run of this kind.
    pub(crate) fn event_type(self) -> &'static str {
        match self {
            RunKind::Automation => "automation_triggered",
            RunKind::Script => "script_started",
        }
    }

    /// The kind an event type announces.
    pub(crate) fn from_event_type(event_type: &str) -> Option<RunKind> {
        RunKind::ALL
            .into_iter()
            .find(|k| k.event_type() == event_type)
    }
}

/// An automation or script run began: the changes it makes carry `context_id` (or have it as
/// their parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunStarted {
    /// Automation or script.
    pub kind: RunKind,
    /// Its entity (`automation.wake_up`, `script.goodnight`).
    pub entity_id: String,
    /// The run's context id.
    pub context_id: String,
}

/// A Home Assistant user as `config/auth/list` lists it (only what attribution needs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct HaUser {
    /// User id (what contexts carry as `user_id`).
    pub id: String,
    /// A user Home Assistant made for a system component: the Supervisor, an add-on.
    #[serde(default)]
    pub system_generated: bool,
}

/// One entity's state object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct State {
    /// Full entity id, e.g. `light.bed_light`.
    pub entity_id: String,
    /// The state string (at most 255 characters in Home Assistant).
    pub state: String,
    /// State attributes.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    /// When the state string last changed.
    #[serde(deserialize_with = "ha_time")]
    pub last_changed: DateTime<Utc>,
    /// When the state or any attribute last changed.
    #[serde(deserialize_with = "ha_time")]
    pub last_updated: DateTime<Utc>,
    /// When the state was last written, even unchanged (HA 2024.3+).
    #[serde(default, deserialize_with = "ha_time_opt")]
    pub last_reported: Option<DateTime<Utc>>,
    /// Context of the last change.
    #[serde(default)]
    pub context: Option<Context>,
}

impl State {
    /// The domain part of the entity id (`light` for `light.bed_light`).
    pub(crate) fn domain(&self) -> &str {
        domain_of(&self.entity_id)
    }

    /// The `device_class` attribute, if it is a string.
    pub(crate) fn device_class(&self) -> Option<&str> {
        self.attributes.get("device_class").and_then(Value::as_str)
    }

    /// The `unit_of_measurement` attribute, if it is a string.
    pub(crate) fn unit(&self) -> Option<&str> {
        self.attributes
            .get("unit_of_measurement")
            .and_then(Value::as_str)
    }
}

/// The domain part of an entity id (everything before the first `.`).
pub(crate) fn domain_of(entity_id: &str) -> &str {
    entity_id
        .split_once('.')
        .map_or(entity_id, |(domain, _)| domain)
}

/// The object-id part of an entity id (everything after the first `.`).
pub(crate) fn object_id_of(entity_id: &str) -> &str {
    entity_id
        .split_once('.')
        .map_or(entity_id, |(_, object)| object)
}

/// A `state_changed` event: `new_state` is `None` when the entity was removed; the event has no
/// `old_state` when the entity was added (including every entity while Home Assistant starts).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StateChanged {
    /// Entity whose state changed.
    pub entity_id: String,
    /// Whether the event carried an `old_state`. Only its presence is read: HomeIQ keeps each
    /// entity's previous state itself, and decoding a second state with its attributes, for
    /// nothing, was a sixth of ingest's CPU time.
    #[serde(rename = "old_state", default, deserialize_with = "present")]
    pub had_old_state: bool,
    /// State after the change.
    #[serde(default)]
    pub new_state: Option<State>,
    /// When Home Assistant fired the event.
    #[serde(deserialize_with = "ha_time")]
    pub time_fired: DateTime<Utc>,
}

/// A timestamp as Home Assistant writes them (`2025-04-01T10:00:00.123456+00:00`), read without
/// chrono's general RFC 3339 parser (a twentieth of ingest's CPU time for the four timestamps of
/// every event); any other form goes to chrono, whose result this always equals.
fn parse_ha_time(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let digit = |i: usize| {
        let d = b[i].wrapping_sub(b'0');
        (d < 10).then_some(u32::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            nanos = nanos * 10 + u32::from(b[i] - b'0');
            i += 1;
            if i - start > 9 {
                return None;
            }
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        nanos *= 10u32.pow(9 - digits as u32);
    }
    if &b[i..] != b"+00:00" && &b[i..] != b"Z" {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let time = chrono::NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// A timestamp in any RFC 3339 form chrono reads, Home Assistant's own quickly.
fn time_of<E: serde::de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
    match parse_ha_time(s) {
        Some(t) => Ok(t),
        None => s
            .parse::<DateTime<chrono::FixedOffset>>()
            .map(|t| t.with_timezone(&Utc))
            .map_err(E::custom),
    }
}

struct TimeVisitor;

impl serde::de::Visitor<'_> for TimeVisitor {
    type Value = DateTime<Utc>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an RFC 3339 timestamp")
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
        time_of(s)
    }
}

/// Deserializes a timestamp (see [`parse_ha_time`]).
pub(crate) fn ha_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(TimeVisitor)
}

/// [`ha_time`] for an optional timestamp (`null` or missing is `None`).
pub(crate) fn ha_time_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    #[derive(Deserialize)]
    struct Time(#[serde(deserialize_with = "ha_time")] DateTime<Utc>);
    Option::<Time>::deserialize(d).map(|t| t.map(|t| t.0))
}

/// Deserializes whether a field is present and not null, skipping its value.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Option::<serde::de::IgnoredAny>::deserialize(d).map(|v| v.is_some())
}

/// The five registries HomeIQ mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryKind {
    /// `config/area_registry`.
    Area,
    /// `config/device_registry`.
    Device,
    /// `config/entity_registry`.
    Entity,
    /// `config/floor_registry`.
    Floor,
    /// `config/label_registry`.
    Label,
}

impl RegistryKind {
    /// Every kind, in the order a full sync applies them (parents before children).
    pub(crate) const ALL: [RegistryKind; 5] = [
        RegistryKind::Floor,
        RegistryKind::Label,
        RegistryKind::Area,
        RegistryKind::Device,
        RegistryKind::Entity,
    ];

    /// The WebSocket command that lists this registry.
    pub(crate) fn list_command(self) -> &'static str {
        match self {
            RegistryKind::Area => "config/area_registry/list",
            RegistryKind::Device => "config/device_registry/list",
            RegistryKind::Entity => "config/entity_registry/list",
            RegistryKind::Floor => "config/floor_registry/list",
            RegistryKind::Label => "config/label_registry/list",
        }
    }

    /// The event type Home Assistant fires when this registry changes.
    pub(crate) fn event_type(self) -> &'static str {
        match self {
            RegistryKind::Area => "area_registry_updated",
            RegistryKind::Device => "device_registry_updated",
            RegistryKind::Entity => "entity_registry_updated",
            RegistryKind::Floor => "floor_registry_updated",
            RegistryKind::Label => "label_registry_updated",
        }
    }

    /// The kind whose change event has this type.
    pub(crate) fn from_event_type(event_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.event_type() == event_type)
    }

    /// The key naming the changed row in this registry's events (`area_id`, `device_id`, …).
    pub(crate) fn event_id_key(self) -> &'static str {
        match self {
            RegistryKind::Area => "area_id",
            RegistryKind::Device => "device_id",
            RegistryKind::Entity => "entity_id",
            RegistryKind::Floor => "floor_id",
            RegistryKind::Label => "label_id",
        }
    }

    /// Lower-case name, as used in logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RegistryKind::Area => "area",
            RegistryKind::Device => "device",
            RegistryKind::Entity => "entity",
            RegistryKind::Floor => "floor",
            RegistryKind::Label => "label",
        }
    }
}

/// A registry change event (`*_registry_updated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegistryEvent {
    /// Which registry changed.
    pub kind: RegistryKind,
    /// `create`, `update`, `remove` (areas and floors also `reorder`).
    pub action: String,
    /// The id of the changed row (`entity_id` for entities), empty for `reorder`.
    pub id: String,
    /// For entity renames: the entity id before the change.
    pub old_entity_id: Option<String>,
    /// The event's whole `data` object.
    pub data: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_state_changed_event_with_an_added_entity() {
        let raw = r#"{"entity_id":"light.x","old_state":null,
            "new_state":{"entity_id":"light.x","state":"on","attributes":{"brightness":180},
            "last_changed":"2025-04-01T10:00:00.123456+00:00","last_updated":"2025-04-01T10:00:00.123456+00:00",
            "last_reported":"2025-04-01T10:00:00.123456+00:00","context":{"id":"01J","parent_id":null,"user_id":null}},
            "time_fired":"2025-04-01T10:00:00.200000+00:00"}"#;
        let ev: StateChanged = serde_json::from_str(raw).expect("decodes");
        let new = ev.new_state.expect("new state");
        assert!(!ev.had_old_state);
        assert_eq!(new.domain(), "light");
        assert_eq!(new.last_updated.timestamp_subsec_micros(), 123_456);
    }

    #[test]
    fn only_the_presence_of_the_old_state_is_read() {
        let with = r#"{"entity_id":"light.x","old_state":{"entity_id":"light.x","state":"off",
            "attributes":{"nested":{"a":[1,2,{"b":"c"}]}},"last_changed":"not even a time"},
            "new_state":null,"time_fired":"2025-04-01T10:00:00+00:00"}"#;
        let ev: StateChanged = serde_json::from_str(with).expect("decodes");
        assert!(ev.had_old_state);
        let without =
            r#"{"entity_id":"light.x","new_state":null,"time_fired":"2025-04-01T10:00:00+00:00"}"#;
        let ev: StateChanged = serde_json::from_str(without).expect("decodes");
        assert!(!ev.had_old_state);
    }

    #[test]
    fn home_assistants_timestamps_read_as_chrono_reads_them() {
        for s in [
            "2025-04-01T10:00:00.123456+00:00",
            "2025-04-01T10:00:00+00:00",
            "2025-04-01T10:00:00.5+00:00",
            "2025-04-01T10:00:00.123456789Z",
            "1999-12-31T23:59:59.000001+00:00",
            "2024-02-29T00:00:00+00:00",
            // chrono's own: other offsets and separators, a leap second, too many digits
            "2025-04-01T12:00:00.25+02:00",
            "2025-04-01 10:00:00+00:00",
            "2025-04-01T10:00:00.1234567891+00:00",
            "2016-12-31T23:59:60.5+00:00",
        ] {
            let chrono = s
                .parse::<DateTime<chrono::FixedOffset>>()
                .map(|t| t.with_timezone(&Utc))
                .expect(s);
            assert_eq!(time_of::<serde_json::Error>(s).expect(s), chrono, "{s}");
        }
        for bad in [
            "2025-02-30T10:00:00+00:00",
            "2025-04-01T25:00:00+00:00",
            "2025-04-01T10:00:00.+00:00",
            "2025-04-01T10:00:00",
            "yesterday",
        ] {
            assert!(time_of::<serde_json::Error>(bad).is_err(), "{bad}");
            assert!(
                bad.parse::<DateTime<chrono::FixedOffset>>().is_err(),
                "{bad}"
            );
        }
        let ev: StateChanged = serde_json::from_str(
            r#"{"entity_id":"light.x","new_state":null,"time_fired":"2025-04-01T10:00:00.2+00:00"}"#,
        )
        .expect("decodes");
        assert_eq!(ev.time_fired.timestamp_subsec_millis(), 200);
    }

    #[test]
    fn registry_kind_round_trips_event_types() {
        for kind in RegistryKind::ALL {
            assert_eq!(RegistryKind::from_event_type(kind.event_type()), Some(kind));
        }
        assert_eq!(RegistryKind::from_event_type("state_changed"), None);
    }
}
