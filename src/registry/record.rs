//! The registry's records: areas, floors, labels, devices and entities as Home Assistant's
//! `config/*_registry/list` sends them. Areas, floors, labels and devices are also what the API
//! answers (the one wire/API representation; the database has its own, in [`super::entities`]);
//! entities are answered as [`super::EntityView`], joined with their state metadata.
//!
//! Every struct is lenient: unknown fields are ignored and missing ones default, so a newer Home
//! Assistant that adds keys never breaks decoding. A field Home Assistant may leave out is an
//! `Option` that stays `None` when it is missing, never a made-up default.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ha::model::domain_of;

/// A row of `config/area_registry/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Area {
    /// Area id.
    #[schema(required = true)]
    pub area_id: String,
    /// Display name.
    #[schema(required = true)]
    pub name: String,
    /// Floor the area is on.
    pub floor_id: Option<String>,
    /// Icon (`mdi:…`).
    pub icon: Option<String>,
    /// Other names.
    #[schema(required = true)]
    pub aliases: Vec<String>,
    /// Label ids.
    #[schema(required = true)]
    pub labels: Vec<String>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// A row of `config/floor_registry/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Floor {
    /// Floor id.
    #[schema(required = true)]
    pub floor_id: String,
    /// Display name.
    #[schema(required = true)]
    pub name: String,
    /// Level (0 = ground floor).
    pub level: Option<i64>,
    /// Icon (`mdi:…`).
    pub icon: Option<String>,
    /// Other names.
    #[schema(required = true)]
    pub aliases: Vec<String>,
    /// Creation time (Unix seconds).
    pub created_at: Option<f64>,
    /// Last modification (Unix seconds).
    pub modified_at: Option<f64>,
}

/// A row of `config/label_registry/list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Label {
    /// Label id.
    #[schema(required = true)]
    pub label_id: String,
    /// Display name.
    #[schema(required = true)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Device {
    /// Device id.
    #[schema(required = true)]
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
    #[schema(required = true)]
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
    #[schema(required = true)]
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

impl Device {
    /// The name to show: the user's name if set, otherwise the integration's.
    pub(crate) fn display_name(&self) -> Option<&str> {
        self.name_by_user.as_deref().or(self.name.as_deref())
    }

    /// The integration (domain) of the device, from its first identifier.
    pub(crate) fn integration(&self) -> Option<&str> {
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
    pub(crate) fn domain(&self) -> &str {
        domain_of(&self.entity_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_integration_comes_from_the_first_identifier() {
        let d: Device =
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

        let parent: Device = serde_json::from_str(
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
        let child: Device = serde_json::from_str(
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
