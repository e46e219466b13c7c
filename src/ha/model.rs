//! Typed forms of what Home Assistant sends: states, `state_changed` events and registry rows.
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
pub type Attributes = Map<String, Value>;

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
    pub last_changed: DateTime<Utc>,
    /// When the state or any attribute last changed.
    pub last_updated: DateTime<Utc>,
    /// When the state was last written, even unchanged (HA 2024.3+).
    #[serde(default)]
    pub last_reported: Option<DateTime<Utc>>,
    /// Context of the last change.
    #[serde(default)]
    pub context: Option<Context>,
}

impl State {
    /// The domain part of the entity id (`light` for `light.bed_light`).
    pub fn domain(&self) -> &str {
        domain_of(&self.entity_id)
    }

    /// The `device_class` attribute, if it is a string.
    pub fn device_class(&self) -> Option<&str> {
        self.attributes.get("device_class").and_then(Value::as_str)
    }

    /// The `unit_of_measurement` attribute, if it is a string.
    pub fn unit(&self) -> Option<&str> {
        self.attributes
            .get("unit_of_measurement")
            .and_then(Value::as_str)
    }
}

/// The domain part of an entity id (everything before the first `.`).
pub fn domain_of(entity_id: &str) -> &str {
    entity_id
        .split_once('.')
        .map_or(entity_id, |(domain, _)| domain)
}

/// The object-id part of an entity id (everything after the first `.`).
pub fn object_id_of(entity_id: &str) -> &str {
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
    pub time_fired: DateTime<Utc>,
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
    pub const ALL: [RegistryKind; 5] = [
        RegistryKind::Floor,
        RegistryKind::Label,
        RegistryKind::Area,
        RegistryKind::Device,
        RegistryKind::Entity,
    ];

    /// The WebSocket command that lists this registry.
    pub fn list_command(self) -> &'static str {
        match self {
            RegistryKind::Area => "config/area_registry/list",
            RegistryKind::Device => "config/device_registry/list",
            RegistryKind::Entity => "config/entity_registry/list",
            RegistryKind::Floor => "config/floor_registry/list",
            RegistryKind::Label => "config/label_registry/list",
        }
    }

    /// The event type Home Assistant fires when this registry changes.
    pub fn event_type(self) -> &'static str {
        match self {
            RegistryKind::Area => "area_registry_updated",
            RegistryKind::Device => "device_registry_updated",
            RegistryKind::Entity => "entity_registry_updated",
            RegistryKind::Floor => "floor_registry_updated",
            RegistryKind::Label => "label_registry_updated",
        }
    }

    /// The kind whose change event has this type.
    pub fn from_event_type(event_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.event_type() == event_type)
    }

    /// The key naming the changed row in this registry's events (`area_id`, `device_id`, …).
    pub fn event_id_key(self) -> &'static str {
        match self {
            RegistryKind::Area => "area_id",
            RegistryKind::Device => "device_id",
            RegistryKind::Entity => "entity_id",
            RegistryKind::Floor => "floor_id",
            RegistryKind::Label => "label_id",
        }
    }

    /// Lower-case name, as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
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
pub struct RegistryEvent {
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

/// A row of `config/area_registry/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AreaEntry {
    /// Area id.
    pub area_id: String,
    /// Display name.
    pub name: String,
    /// Floor the area is on.
    pub floor_id: Option<String>,
    /// Icon (`mdi:…`).
    pub icon: Option<String>,
    /// Other names.
    pub aliases: Vec<String>,
    /// Label ids.
    pub labels: Vec<String>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// A row of `config/floor_registry/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FloorEntry {
    /// Floor id.
    pub floor_id: String,
    /// Display name.
    pub name: String,
    /// Level (0 = ground floor).
    pub level: Option<i64>,
    /// Icon (`mdi:…`).
    pub icon: Option<String>,
    /// Other names.
    pub aliases: Vec<String>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// A row of `config/label_registry/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelEntry {
    /// Label id.
    pub label_id: String,
    /// Display name.
    pub name: String,
    /// Colour name or value.
    pub color: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Icon (`mdi:…`).
    pub icon: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// A row of `config/device_registry/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceEntry {
    /// Device id.
    pub id: String,
    /// Name given by the integration.
    pub name: Option<String>,
    /// Name given by the user (takes precedence for display).
    pub name_by_user: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Model id.
    pub model_id: Option<String>,
    /// Area the device is in.
    pub area_id: Option<String>,
    /// Label ids.
    pub labels: Vec<String>,
    /// Config entries providing the device; `None` when Home Assistant did not send the list
    /// (2026 child devices come with a reduced row).
    pub config_entries: Option<Vec<String>>,
    /// The primary config entry.
    pub primary_config_entry: Option<String>,
    /// The config entry that created the device (Home Assistant 2026).
    pub config_entry_id: Option<String>,
    /// The config subentry that created the device (Home Assistant 2026).
    pub config_subentry_id: Option<String>,
    /// `(domain, id)` pairs identifying the device in its integrations.
    pub identifiers: Vec<(String, String)>,
    /// Why the device is disabled, if it is.
    pub disabled_by: Option<String>,
    /// `service` for services, otherwise none.
    pub entry_type: Option<String>,
    /// Parent device (hubs).
    pub via_device_id: Option<String>,
    /// Parent device (2026 child devices).
    pub parent_device_id: Option<String>,
    /// Software version.
    pub sw_version: Option<String>,
    /// Hardware version.
    pub hw_version: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// Configuration URL.
    pub configuration_url: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

impl DeviceEntry {
    /// The name to show: the user's name if set, otherwise the integration's.
    pub fn display_name(&self) -> Option<&str> {
        self.name_by_user.as_deref().or(self.name.as_deref())
    }

    /// The integration (domain) of the device, from its first identifier.
    pub fn integration(&self) -> Option<&str> {
        self.identifiers.first().map(|(domain, _)| domain.as_str())
    }
}

/// A row of `config/entity_registry/list` (or the reply of `config/entity_registry/get`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityEntry {
    /// Registry id (stable across renames).
    pub id: String,
    /// Current entity id.
    pub entity_id: String,
    /// Name given by the user.
    pub name: Option<String>,
    /// Name given by the integration.
    pub original_name: Option<String>,
    /// Integration providing the entity.
    pub platform: String,
    /// Device the entity belongs to.
    pub device_id: Option<String>,
    /// Area set on the entity itself (often none: then the device's area applies).
    pub area_id: Option<String>,
    /// Label ids.
    pub labels: Vec<String>,
    /// `config` or `diagnostic`.
    pub entity_category: Option<String>,
    /// Why the entity is disabled, if it is.
    pub disabled_by: Option<String>,
    /// Why the entity is hidden, if it is.
    pub hidden_by: Option<String>,
    /// Config entry providing the entity.
    pub config_entry_id: Option<String>,
    /// Unique id within the platform.
    pub unique_id: Option<Value>,
    /// Icon set by the user.
    pub icon: Option<String>,
    /// Whether the name is composed with the device name; `None` when Home Assistant did not
    /// send it (2026.x no longer does: names are composed of parts there).
    pub has_entity_name: Option<bool>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

impl EntityEntry {
    /// The domain part of the entity id.
    pub fn domain(&self) -> &str {
        domain_of(&self.entity_id)
    }
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
    fn registry_kind_round_trips_event_types() {
        for kind in RegistryKind::ALL {
            assert_eq!(RegistryKind::from_event_type(kind.event_type()), Some(kind));
        }
        assert_eq!(RegistryKind::from_event_type("state_changed"), None);
    }

    #[test]
    fn device_integration_comes_from_the_first_identifier() {
        let d: DeviceEntry =
            serde_json::from_str(r#"{"id":"d1","identifiers":[["demo","abc"]],"unknown_key":1}"#)
                .expect("decodes");
        assert_eq!(d.integration(), Some("demo"));
        assert_eq!(d.display_name(), None);
    }

    #[test]
    fn home_assistant_2026_rows_decode_and_keep_unsent_fields_absent() {
        // `config/entity_registry/list` of 2026.11: no `has_entity_name`, a `next_name_part`,
        // `original_name` without the device name
        let e: EntityEntry = serde_json::from_str(
            r#"{"area_id":null,"categories":{},"config_entry_id":"01JCE","config_subentry_id":null,
            "created_at":1704067200.0,"device_id":"d1","disabled_by":null,"entity_category":null,
            "entity_id":"sensor.kitchen_climate_sensor_battery","hidden_by":null,"icon":null,
            "id":"e1","labels":[],"modified_at":1704067200.0,"name":null,"next_name_part":null,
            "options":{},"original_name":"Battery","platform":"zha","translation_key":null,
            "unique_id":"abc"}"#,
        )
        .expect("2026 entity row");
        assert_eq!(e.has_entity_name, None, "not sent, not made up");
        assert_eq!(e.original_name.as_deref(), Some("Battery"));
        let e: EntityEntry = serde_json::from_str(
            r#"{"id":"e2","entity_id":"light.x","platform":"hue","has_entity_name":false}"#,
        )
        .expect("2025 entity row");
        assert_eq!(e.has_entity_name, Some(false));

        let parent: DeviceEntry = serde_json::from_str(
            r#"{"area_id":"garage","config_entries":["01JCE"],"config_entries_subentries":{"01JCE":[null]},
            "config_entry_id":"01JCE","config_subentry_id":null,"configuration_url":null,
            "connections":[["mac","aa:bb"]],"created_at":1704067200.0,"disabled_by":null,
            "entry_type":null,"hw_version":null,"id":"d1","identifiers":[["shelly","x"]],"labels":[],
            "manufacturer":"Shelly","model":"Pro 3EM","model_id":"SPEM","modified_at":1704067200.0,
            "name_by_user":null,"name":"House Energy Meter","parent_device_id":null,
            "primary_config_entry":"01JCE","serial_number":null,"sw_version":"1.4.4",
            "via_device_id":null}"#,
        )
        .expect("2026 device row");
        assert_eq!(parent.config_entry_id.as_deref(), Some("01JCE"));
        assert_eq!(parent.config_entries, Some(vec!["01JCE".to_owned()]));
        assert_eq!(parent.parent_device_id, None);
        // a child device: the reduced row
        let child: DeviceEntry = serde_json::from_str(
            r#"{"area_id":"garage","config_entry_id":"01JCE","config_subentry_id":null,
            "created_at":1704067200.0,"disabled_by":null,"id":"d2","identifiers":[["shelly","x-a"]],
            "labels":[],"modified_at":1704067200.0,"name":"Phase A","name_by_user":null,
            "parent_device_id":"d1"}"#,
        )
        .expect("reduced child device row");
        assert_eq!(child.parent_device_id.as_deref(), Some("d1"));
        assert_eq!(child.config_entries, None, "not sent, not made up");
        assert_eq!(child.manufacturer, None);
        assert_eq!(child.model, None);
        assert_eq!(child.display_name(), Some("Phase A"));
    }
}
